"""OpenPose layout (SPEC 4) and OpenPose JSON (SPEC 6): exact values, round trips, bad input."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from dwpose_ctrl.keypoints import Person
from dwpose_ctrl.openpose import (
    FOOT_KEY,
    OpenPoseFrame,
    OpenPosePerson,
    dumps_frame,
    frame_from_json,
    frame_to_json,
    joint_visible,
    loads_frame,
    persons_to_openpose,
    point_present,
    read_json,
    to_openpose,
    write_json,
)
from dwpose_ctrl.render import RenderOptions, draw_openpose

# OpenPose-18 index -> COCO-WholeBody body index (the neck, OpenPose 1, is computed).
OPENPOSE_FROM_COCO = {0: 0, 2: 6, 3: 8, 4: 10, 5: 5, 6: 7, 7: 9, 8: 12, 9: 14, 10: 16}
OPENPOSE_FROM_COCO |= {11: 11, 12: 13, 13: 15, 14: 2, 15: 1, 16: 4, 17: 3}


def numbered_pose(persons: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints whose x encodes the COCO index (x = index + 0.25, y = 2 * index + 0.5 + 300 p)."""
    index = np.arange(133, dtype=np.float64)
    keypoints = np.stack(
        [np.stack((index + 0.25, 2 * index + 0.5 + 300 * person), axis=-1) for person in range(persons)]
    )
    scores = np.tile(np.linspace(0.01, 0.99, 133), (persons, 1))
    return keypoints, scores


# ----------------------------------------------------------------------------------------------
# Layout


def test_body_remap_and_normalisation() -> None:
    keypoints, scores = numbered_pose()
    frame = to_openpose(keypoints, scores, 640, 512)
    assert (frame.width, frame.height) == (640, 512)
    body = frame.people[0].body
    for openpose, coco in OPENPOSE_FROM_COCO.items():
        assert body[openpose, 0] == keypoints[0, coco, 0] / 640.0
        assert body[openpose, 1] == keypoints[0, coco, 1] / 512.0
        assert body[openpose, 2] == scores[0, coco]


def test_other_parts_keep_coco_order() -> None:
    keypoints, scores = numbered_pose()
    person = to_openpose(keypoints, scores, 100, 200).people[0]
    for part, start in (
        (person.feet, 17),
        (person.face, 23),
        (person.left_hand, 91),
        (person.right_hand, 112),
    ):
        count = len(part)
        np.testing.assert_array_equal(part[:, 0], keypoints[0, start : start + count, 0] / 100.0)
        np.testing.assert_array_equal(part[:, 1], keypoints[0, start : start + count, 1] / 200.0)
        np.testing.assert_array_equal(part[:, 2], scores[0, start : start + count])
    assert (len(person.feet), len(person.face), len(person.left_hand), len(person.right_hand)) == (
        6,
        68,
        21,
        21,
    )


@pytest.mark.parametrize(
    ("left", "right", "neck_score"),
    [(0.9, 0.31, 1.0), (0.3, 0.9, 0.0), (0.9, 0.3, 0.0), (0.1, 0.1, 0.0), (np.float32(0.3), 0.9, 1.0)],
)
def test_neck_is_the_shoulder_mean_scored_one_or_zero(left: float, right: float, neck_score: float) -> None:
    keypoints = np.zeros((1, 133, 2))
    keypoints[0, 5] = (10.0, 20.0)
    keypoints[0, 6] = (31.0, 25.0)
    scores = np.zeros((1, 133))
    scores[0, 5], scores[0, 6] = left, right
    neck = to_openpose(keypoints, scores, 64, 32).people[0].body[1]
    assert neck[0] == 20.5 / 64
    assert neck[1] == 22.5 / 32
    assert neck[2] == neck_score


def test_visibility_rules() -> None:
    scores = np.array([0.2999, 0.3, 0.30001, np.float32(0.3)])
    assert joint_visible(scores).tolist() == [False, False, True, True]
    assert point_present(scores).tolist() == [False, True, True, True]
    person = OpenPosePerson(
        body=np.full((18, 3), 0.3),
        feet=np.full((6, 3), 0.3),
        face=np.full((68, 3), 0.3),
        left_hand=np.full((21, 3), 0.3),
        right_hand=np.full((21, 3), 0.2),
    )
    assert not person.body_visible().any() and not person.feet_visible().any()
    assert person.face_present().all() and person.left_hand_present().all()
    assert not person.right_hand_present().any()


def test_several_persons_keep_their_order() -> None:
    keypoints, scores = numbered_pose(3)
    frame = to_openpose(keypoints, scores, 100, 1000)
    assert [person.body[0, 1] * 1000 for person in frame.people] == [0.5, 300.5, 600.5]


def test_persons_to_openpose_matches_to_openpose() -> None:
    keypoints, scores = numbered_pose(2)
    persons = [
        Person(keypoints=keypoints[index], scores=scores[index], box=np.array([0, 0, 9, 9.0]), box_score=0.9)
        for index in range(2)
    ]
    assert persons_to_openpose(persons, 320, 240) == to_openpose(keypoints, scores, 320, 240)
    empty = persons_to_openpose([], 320, 240)
    assert empty.people == [] and (empty.width, empty.height) == (320, 240)


def test_person_arrays_are_read_only_float64_copies() -> None:
    body = np.zeros((18, 3), dtype=np.float32)
    person = OpenPosePerson(body, np.zeros((6, 3)), np.zeros((68, 3)), np.zeros((21, 3)), np.zeros((21, 3)))
    body[0, 0] = 5
    assert person.body[0, 0] == 0
    assert person.body.dtype == np.float64
    with pytest.raises(ValueError):
        person.body[0, 0] = 1
    with pytest.raises(ValueError, match="NaN"):
        OpenPosePerson(
            np.full((18, 3), np.nan),
            np.zeros((6, 3)),
            np.zeros((68, 3)),
            np.zeros((21, 3)),
            np.zeros((21, 3)),
        )
    with pytest.raises(ValueError, match=r"face must have shape \(68, 3\)"):
        OpenPosePerson(body, np.zeros((6, 3)), np.zeros((70, 3)), np.zeros((21, 3)), np.zeros((21, 3)))


@pytest.mark.parametrize(
    ("keypoints", "scores", "size", "error", "match"),
    [
        (np.zeros((1, 17, 2)), np.zeros((1, 17)), (10, 10), ValueError, "shape"),
        (np.zeros((133, 2)), np.zeros(133), (10, 10), ValueError, "shape"),
        (np.zeros((2, 133, 2)), np.zeros((1, 133)), (10, 10), ValueError, "scores"),
        (np.full((1, 133, 2), np.nan), np.zeros((1, 133)), (10, 10), ValueError, "NaN"),
        (np.zeros((1, 133, 2)), np.full((1, 133), np.inf), (10, 10), ValueError, "NaN"),
        ([[0, 0]] * 133, np.zeros((1, 133)), (10, 10), TypeError, "numpy array"),
        (np.zeros((1, 133, 2), dtype=bool), np.zeros((1, 133)), (10, 10), TypeError, "real numbers"),
        (np.zeros((1, 133, 2)), np.zeros((1, 133)), (0, 10), ValueError, "width"),
        (np.zeros((1, 133, 2)), np.zeros((1, 133)), (10.0, 10), TypeError, "width"),
        (np.zeros((1, 133, 2)), np.zeros((1, 133)), (10, True), TypeError, "height"),
    ],
)
def test_to_openpose_rejects_bad_input(keypoints, scores, size, error, match) -> None:
    with pytest.raises(error, match=match):
        to_openpose(keypoints, scores, *size)


def test_persons_to_openpose_rejects_other_objects() -> None:
    with pytest.raises(TypeError, match="Person"):
        persons_to_openpose([np.zeros((133, 2))], 10, 10)


# ----------------------------------------------------------------------------------------------
# JSON


def small_frame() -> OpenPoseFrame:
    """Canvas 200 x 100; a person with two body joints, one hand point, one face point, a foot."""
    body = np.zeros((18, 3))
    body[0] = (0.5, 0.25, 0.9)  # nose
    body[14] = (0.25, 0.125, 0.31)  # right eye
    body[15] = (0.75, 0.125, 0.3)  # left eye: exactly 0.3 is not visible
    feet = np.zeros((6, 3))
    feet[2] = (0.5, 0.875, 0.8)
    face = np.zeros((68, 3))
    face[0] = (0.1, 0.2, 0.3)  # exactly 0.3 is present
    left = np.zeros((21, 3))
    left[20] = (0.625, 0.5, 1.0)
    person = OpenPosePerson(body=body, feet=feet, face=face, left_hand=left, right_hand=np.zeros((21, 3)))
    nobody = OpenPosePerson(
        body=np.zeros((18, 3)),
        feet=np.zeros((6, 3)),
        face=np.zeros((68, 3)),
        left_hand=np.zeros((21, 3)),
        right_hand=np.zeros((21, 3)),
    )
    return OpenPoseFrame([person, nobody], 200, 100)


def test_json_exact_structure_in_image_pixels() -> None:
    data = frame_to_json(small_frame(), 400, 300)
    zeros = [0.0, 0.0, 0.0]
    pose = zeros * 18
    pose[0:3] = [200.0, 75.0, 1.0]
    pose[42:45] = [100.0, 37.5, 1.0]
    face = zeros * 70
    face[0:3] = [40.0, 60.0, 1.0]
    face[204:207] = [100.0, 37.5, 1.0]  # point 68 is the right eye (body 14); 69 (body 15) is hidden
    left = zeros * 21
    left[60:63] = [250.0, 150.0, 1.0]
    foot = zeros * 6
    foot[6:9] = [200.0, 262.5, 1.0]
    assert data == {
        "people": [
            {
                "pose_keypoints_2d": pose,
                "face_keypoints_2d": face,
                "hand_left_keypoints_2d": left,
                "hand_right_keypoints_2d": None,
                "foot_keypoints_2d": foot,
            },
            {
                "pose_keypoints_2d": zeros * 18,
                "face_keypoints_2d": None,
                "hand_left_keypoints_2d": None,
                "hand_right_keypoints_2d": None,
            },
        ],
        "canvas_width": 400,
        "canvas_height": 300,
    }
    assert all(type(value) is float for value in data["people"][0]["pose_keypoints_2d"])
    assert json.loads(json.dumps(data)) == data


def test_json_coordinates_are_unrounded() -> None:
    keypoints = np.full((1, 133, 2), 10.123456789)
    frame = to_openpose(keypoints, np.ones((1, 133)), 100, 100)
    data = frame_to_json(frame, 333, 100)
    assert data["people"][0]["pose_keypoints_2d"][0] == frame.people[0].body[0, 0] * 333


def test_json_round_trip_on_the_same_canvas_is_exact() -> None:
    frame = small_frame()
    back = frame_from_json(frame_to_json(frame, frame.width, frame.height))
    assert (back.width, back.height) == (200, 100)
    original = frame.people[0]
    visible = original.body_visible()
    np.testing.assert_array_equal(back.people[0].body[visible, :2], original.body[visible, :2])
    assert back.people[0].body[:, 2].tolist() == visible.astype(float).tolist()
    options = RenderOptions(include_foot=True)
    assert np.array_equal(draw_openpose(back, options=options), draw_openpose(frame, options=options))


def random_frame(seed: int, integer_pixels: bool) -> OpenPoseFrame:
    rng = np.random.default_rng(seed)
    height, width = int(rng.integers(40, 300)), int(rng.integers(40, 300))
    keypoints = rng.uniform(-10, [width + 10, height + 10], size=(6, 133, 2))
    if integer_pixels:
        keypoints = np.round(keypoints)
    scores = rng.uniform(0, 1, size=(6, 133))
    scores[rng.random((6, 133)) < 0.1] = 0.3
    return to_openpose(keypoints, scores, width, height)


@pytest.mark.parametrize("seed", range(20))
def test_json_round_trip_renders_the_same_map(seed: int) -> None:
    options = RenderOptions(include_foot=True)
    # Same canvas: exact for any coordinates, whole pixels included.
    frame = random_frame(seed, integer_pixels=True)
    back = frame_from_json(frame_to_json(frame, frame.width, frame.height))
    assert np.array_equal(draw_openpose(back, options=options), draw_openpose(frame, options=options))
    # Another image size (SPEC 6: the input image's pixels), through JSON text.
    frame = random_frame(seed, integer_pixels=False)
    rng = np.random.default_rng(seed)
    image_width, image_height = int(rng.integers(50, 4000)), int(rng.integers(50, 4000))
    back = loads_frame(dumps_frame(frame, image_width, image_height))
    assert (back.width, back.height) == (image_width, image_height)
    back = dataclasses.replace(back, width=frame.width, height=frame.height)
    assert np.array_equal(draw_openpose(back, options=options), draw_openpose(frame, options=options))


def test_json_file_round_trip(tmp_path) -> None:
    frame = small_frame()
    path = tmp_path / "pose.json"
    write_json(path, frame, 200, 100, indent=2)
    assert json.loads(path.read_text()) == frame_to_json(frame, 200, 100)
    assert np.array_equal(draw_openpose(read_json(path)), draw_openpose(frame))


def test_reads_a1111_style_json_with_its_own_canvas() -> None:
    # The A1111 extension writes integer-valued pixels of its own (padded) detection canvas.
    pose = [0.0] * 54
    pose[0:3] = [512, 256, 1]  # nose
    pose[3:6] = [512, 400, 1]  # neck
    data = {
        "people": [
            {
                "pose_keypoints_2d": pose,
                "face_keypoints_2d": [256, 128, 1] + [0, 0, 0] * 69,
                "hand_left_keypoints_2d": None,
                "hand_right_keypoints_2d": [0, 0, 0] * 20 + [768, 512, 1],
            }
        ],
        "canvas_width": 1024,
        "canvas_height": 768,
        "animals": [],
    }
    frame = frame_from_json(data)
    assert (frame.width, frame.height) == (1024, 768)
    person = frame.people[0]
    assert person.body[0].tolist() == [0.5, 256 / 768, 1.0]
    assert person.face[0].tolist() == [0.25, 128 / 768, 1.0]
    assert person.right_hand[20].tolist() == [0.75, 512 / 768, 1.0]
    assert not person.left_hand_present().any()
    image = draw_openpose(dataclasses.replace(frame, width=512, height=384))
    assert tuple(image[128, 256]) == (255, 0, 0)  # nose joint, drawn at half size
    assert tuple(image[64, 128]) == (255, 255, 255)  # face dot
    assert tuple(image[256, 384]) == (0, 0, 255)  # hand point


def test_reads_body25_pose_and_70_point_face() -> None:
    body25 = np.zeros((25, 3))
    body25[:, 0] = np.arange(25)  # x = BODY_25 index
    body25[:, 2] = 1.0
    data = {
        "people": [{"pose_keypoints_2d": body25.ravel().tolist(), "face_keypoints_2d": [5.0, 5.0, 0.9] * 70}],
        "canvas_width": 100,
        "canvas_height": 100,
    }
    person = frame_from_json(data).people[0]
    expected_body = [0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18]
    assert (person.body[:, 0] * 100).round().astype(int).tolist() == expected_body
    assert (person.feet[:, 0] * 100).round().astype(int).tolist() == [19, 20, 21, 22, 23, 24]
    assert person.face.shape == (68, 3) and person.face[0, 2] == 0.9
    assert not person.left_hand_present().any()  # absent keys are missing parts


def test_confidence_becomes_the_score() -> None:
    pose = [50.0, 50.0, 0.2] + [0.0] * 51
    frame = frame_from_json(
        {"people": [{"pose_keypoints_2d": pose}], "canvas_width": 100, "canvas_height": 100}
    )
    assert frame.people[0].body[0, 2] == 0.2
    assert not draw_openpose(frame).any()


def test_empty_people() -> None:
    frame = frame_from_json({"people": [], "canvas_width": 64, "canvas_height": 48})
    assert frame.people == [] and (frame.width, frame.height) == (64, 48)
    assert frame_to_json(frame, 64, 48) == {"people": [], "canvas_width": 64, "canvas_height": 48}


def valid_json() -> dict:
    return frame_to_json(small_frame(), 200, 100)


def broken(edit) -> dict:
    data = valid_json()
    edit(data)
    return data


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (broken(lambda d: d.pop("people")), "'people'"),
        (broken(lambda d: d.pop("canvas_width")), "'canvas_width'"),
        (broken(lambda d: d.pop("canvas_height")), "'canvas_height'"),
        (broken(lambda d: d.update(canvas_width=0)), "canvas_width"),
        (broken(lambda d: d.update(canvas_width=12.5)), "canvas_width"),
        (broken(lambda d: d.update(canvas_height="100")), "canvas_height"),
        (broken(lambda d: d.update(people={"a": 1})), "'people' must be a list"),
        (broken(lambda d: d["people"].append([1, 2, 3])), r"people\[2\]"),
        (
            broken(lambda d: d["people"][1].pop("pose_keypoints_2d")),
            r"people\[1\] has no 'pose_keypoints_2d'",
        ),
        (broken(lambda d: d["people"][0]["pose_keypoints_2d"].pop()), r"54 or 75 numbers .* got 53"),
        (broken(lambda d: d["people"][0].update(face_keypoints_2d=[0.0] * 207)), "204 or 210"),
        (broken(lambda d: d["people"][0].update(hand_left_keypoints_2d=[0.0] * 62)), "63 numbers"),
        (broken(lambda d: d["people"][0].update(foot_keypoints_2d=[0.0] * 3)), "18 numbers"),
        (
            broken(lambda d: d["people"][0]["pose_keypoints_2d"].__setitem__(4, "7")),
            r"pose_keypoints_2d\[4\]",
        ),
        (broken(lambda d: d["people"][0]["pose_keypoints_2d"].__setitem__(4, None)), "finite number"),
        (broken(lambda d: d["people"][0]["pose_keypoints_2d"].__setitem__(4, True)), "finite number"),
        (broken(lambda d: d["people"][0]["pose_keypoints_2d"].__setitem__(4, float("nan"))), "finite"),
        (broken(lambda d: d["people"][0].update(hand_right_keypoints_2d="none")), "list of numbers or null"),
        ([valid_json()], "list"),
    ],
)
def test_frame_from_json_rejects_bad_json(data, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        frame_from_json(data)


def test_bad_json_text_and_types() -> None:
    with pytest.raises(ValueError, match="not valid OpenPose JSON"):
        loads_frame("{people: []}")
    with pytest.raises(TypeError, match="dict"):
        frame_from_json("{}")
    with pytest.raises(TypeError, match="OpenPoseFrame"):
        frame_to_json({"people": []}, 10, 10)
    with pytest.raises(ValueError, match="image width"):
        frame_to_json(small_frame(), 0, 10)


def test_foot_key_only_for_persons_with_a_visible_foot_point() -> None:
    data = frame_to_json(small_frame(), 200, 100)
    assert [FOOT_KEY in person for person in data["people"]] == [True, False]


# ----------------------------------------------------------------------------------------------
# Property: any JSON-like input gives a frame or a clear error

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_KEYS = ["people", "canvas_width", "canvas_height", "pose_keypoints_2d", "face_keypoints_2d"]
_KEYS += ["hand_left_keypoints_2d", "hand_right_keypoints_2d", "foot_keypoints_2d"]
_numbers = st.integers(min_value=-(10**400), max_value=10**400) | st.floats() | st.booleans() | st.none()
_json_like = st.recursive(
    _numbers | st.text(max_size=3),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(_KEYS) | st.text(max_size=2), children, max_size=4)
    ),
    max_leaves=20,
)


def _part(counts: list[int]):
    return st.none() | st.integers(0, 1).flatmap(
        lambda exact: st.sampled_from(counts).flatmap(
            lambda count: st.lists(_numbers, min_size=3 * count + 1 - exact, max_size=3 * count + 1 - exact)
        )
    )


_openpose_like = st.fixed_dictionaries(
    {
        "people": st.lists(
            st.fixed_dictionaries(
                {"pose_keypoints_2d": _part([18, 25])},
                optional={
                    "face_keypoints_2d": _part([68, 70]),
                    "hand_left_keypoints_2d": _part([21]),
                    "hand_right_keypoints_2d": _part([21]),
                    "foot_keypoints_2d": _part([6]),
                },
            ),
            max_size=3,
        ),
        "canvas_width": st.integers(-2, 5000) | st.floats(),
        "canvas_height": st.integers(-2, 5000),
    }
)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(_json_like | _openpose_like)
def test_any_json_gives_a_frame_or_a_clear_error(data) -> None:
    try:
        frame = frame_from_json(data)
    except (TypeError, ValueError) as error:
        assert str(error)
        return
    assert isinstance(frame, OpenPoseFrame)
    small = dataclasses.replace(frame, width=32, height=24)
    try:
        image = draw_openpose(small, options=RenderOptions(include_foot=True, stick_scaling=True))
    except ValueError as error:
        assert "beyond what can be drawn" in str(error)
        return
    assert image.shape == (24, 32, 3)
    assert frame_from_json(frame_to_json(frame, frame.width, frame.height)).people.__len__() == len(
        frame.people
    )
