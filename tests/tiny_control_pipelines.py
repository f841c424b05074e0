"""More tiny, randomly initialised pose-capable diffusers pipelines (CPU, no downloads).

Companions of ``tiny_pipelines.py`` (SD 1.5 and SDXL ControlNet) for the other families that
``dwpose_ctrl.pipelines.pose_inputs`` feeds: SDXL ControlNet-Union, SD3 ControlNet (without its
T5 encoder, which the SD3 pipelines allow), Flux ControlNet (a Union model with a mode embedding,
or one without like Union Pro 2.0), T2I-Adapters for SD and SDXL, Qwen-Image ControlNet and
HunyuanDiT ControlNet. Every builder takes a
folder for the locally written CLIP tokenizer; ``save_tiny(family, path)`` saves one like a Hub
repository (the ControlNet or adapter in ``path / "controlnet"`` or ``path / "adapter"``).

The Flux pipeline's second tokenizer is the same small CLIP BPE tokenizer in front of a tiny T5
encoder: the pipeline only needs token ids for it, and a real T5 tokenizer cannot be built
without its SentencePiece model. The ControlNets' zero-initialised output layers get random
weights, so that the control map changes the result.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    AutoencoderKLQwenImage,
    ControlNetUnionModel,
    DDPMScheduler,
    EulerDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    FluxControlNetModel,
    FluxControlNetPipeline,
    FluxTransformer2DModel,
    HunyuanDiT2DControlNetModel,
    HunyuanDiT2DModel,
    HunyuanDiTControlNetPipeline,
    QwenImageControlNetModel,
    QwenImageControlNetPipeline,
    QwenImageTransformer2DModel,
    SD3ControlNetModel,
    SD3Transformer2DModel,
    StableDiffusion3ControlNetPipeline,
    StableDiffusionAdapterPipeline,
    StableDiffusionXLAdapterPipeline,
    StableDiffusionXLControlNetUnionPipeline,
    T2IAdapter,
    UNet2DConditionModel,
)
from tiny_pipelines import (
    TEXT_HIDDEN,
    TOKENIZER_WORDS,
    _text_config,
    _unet_and_controlnet,
    _vae,
    sdxl_shared_parts,
    tiny_clip_tokenizer,
)
from transformers import (
    BertConfig,
    BertModel,
    BertTokenizer,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    T5Config,
    T5EncoderModel,
)

FAMILIES = (
    "sdxl-union",
    "sd3",
    "flux",
    "flux-no-mode",
    "t2i-adapter",
    "t2i-adapter-sdxl",
    "qwen-image",
    "hunyuandit",
)
FLUX_UNION_MODES = 10  # InstantX/FLUX.1-dev-Controlnet-Union's config: num_mode 10
SDXL_UNION_CONTROL_TYPES = 8  # brad-twinkl/controlnet-union-sdxl-1.0-promax's num_control_type


def _randomise(*layers: torch.nn.Module) -> None:
    """Random weights for zero-initialised output layers (trained ControlNets have non-zero ones)."""
    with torch.no_grad():
        for layer in layers:
            for parameter in layer.parameters():
                parameter.normal_(std=0.5)


def _latent_vae(shift_factor: float = 0.1, scaling_factor: float = 1.5) -> AutoencoderKL:
    """The tiny VAE with the shift/scale the transformer pipelines read from its config."""
    vae = _vae()
    vae.register_to_config(shift_factor=shift_factor, scaling_factor=scaling_factor)
    return vae


def build_tiny_sdxl_union(tokenizer_dir: Path, seed: int = 0) -> StableDiffusionXLControlNetUnionPipeline:
    """SDXL with a ControlNet-Union (8 control types, like the ProMax checkpoint)."""
    torch.manual_seed(seed)
    tokenizer = tiny_clip_tokenizer(tokenizer_dir)
    unet, _ = _unet_and_controlnet(sdxl=True)
    controlnet = ControlNetUnionModel(
        **{key: unet.config[key] for key in _SHARED_UNET_KEYS},
        conditioning_embedding_out_channels=(4, 4, 4, 4),
        num_control_type=SDXL_UNION_CONTROL_TYPES,
        num_trans_channel=unet.config.block_out_channels[0],
        num_trans_head=2,
        num_proj_channel=unet.config.block_out_channels[0],
    )
    _randomise(
        controlnet.controlnet_cond_embedding.conv_out,
        controlnet.controlnet_down_blocks,
        controlnet.controlnet_mid_block,
    )
    return StableDiffusionXLControlNetUnionPipeline(
        **sdxl_shared_parts(tokenizer), unet=unet, controlnet=controlnet, add_watermarker=False
    )


_SHARED_UNET_KEYS = (
    "block_out_channels",
    "layers_per_block",
    "in_channels",
    "down_block_types",
    "norm_num_groups",
    "attention_head_dim",
    "cross_attention_dim",
    "use_linear_projection",
    "addition_embed_type",
    "addition_time_embed_dim",
    "transformer_layers_per_block",
    "projection_class_embeddings_input_dim",
)


def _transformer_shape() -> dict:
    return {"num_layers": 1, "attention_head_dim": 8, "num_attention_heads": 2}


def build_tiny_sd3(tokenizer_dir: Path, seed: int = 0) -> StableDiffusion3ControlNetPipeline:
    """SD3 with an SD3 ControlNet; two CLIP encoders, no T5 (``text_encoder_3=None``)."""
    torch.manual_seed(seed)
    tokenizer = tiny_clip_tokenizer(tokenizer_dir)
    shape = {
        "sample_size": 16,
        "patch_size": 2,
        "in_channels": 4,
        "joint_attention_dim": TEXT_HIDDEN,
        "caption_projection_dim": 16,
        "pooled_projection_dim": 2 * TEXT_HIDDEN,
        "out_channels": 4,
        "pos_embed_max_size": 32,
        **_transformer_shape(),
    }
    # two blocks: SD3 adds ControlNet residuals only to blocks that update the text stream,
    # and its last block does not
    transformer = SD3Transformer2DModel(**{**shape, "num_layers": 2})
    controlnet = SD3ControlNetModel(**shape)
    _randomise(controlnet.pos_embed_input, controlnet.controlnet_blocks)
    return StableDiffusion3ControlNetPipeline(
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=_latent_vae(),
        text_encoder=CLIPTextModelWithProjection(_text_config(len(tokenizer))),
        tokenizer=tokenizer,
        text_encoder_2=CLIPTextModelWithProjection(_text_config(len(tokenizer))),
        tokenizer_2=tokenizer,
        text_encoder_3=None,
        tokenizer_3=None,
        controlnet=controlnet,
    )


def build_tiny_flux(tokenizer_dir: Path, seed: int = 0, union: bool = True) -> FluxControlNetPipeline:
    """Flux with an InstantX-style ControlNet: a Union one (mode embedding) or, with
    ``union=False``, one without modes like Union Pro 2.0."""
    torch.manual_seed(seed)
    tokenizer = tiny_clip_tokenizer(tokenizer_dir)
    shape = {
        "patch_size": 1,
        "in_channels": 16,  # 4 latent channels packed in 2 x 2 patches
        "joint_attention_dim": TEXT_HIDDEN,
        "pooled_projection_dim": TEXT_HIDDEN,
        "axes_dims_rope": (2, 2, 4),
        "num_single_layers": 1,
        **_transformer_shape(),
    }
    transformer = FluxTransformer2DModel(**shape)
    controlnet = FluxControlNetModel(**shape, num_mode=FLUX_UNION_MODES if union else None)
    _randomise(
        controlnet.controlnet_x_embedder, controlnet.controlnet_blocks, controlnet.controlnet_single_blocks
    )
    t5 = _tiny_t5(len(tokenizer))
    return FluxControlNetPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=_latent_vae(),
        text_encoder=CLIPTextModel(_text_config(len(tokenizer))),
        tokenizer=tokenizer,
        text_encoder_2=t5,
        tokenizer_2=tokenizer,
        transformer=transformer,
        controlnet=controlnet,
    )


def build_tiny_t2i_adapter(tokenizer_dir: Path, seed: int = 0, sdxl: bool = False):
    """A T2I-Adapter pipeline: SD (``full_adapter``) or SDXL (``full_adapter_xl``)."""
    torch.manual_seed(seed)
    tokenizer = tiny_clip_tokenizer(tokenizer_dir)
    if sdxl:
        unet, _ = _unet_and_controlnet(sdxl=True)
        # features at 1/16 of the image: after the first UNet block (16 channels), inside the second (32)
        adapter = T2IAdapter(
            channels=list(unet.config.block_out_channels),
            num_res_blocks=1,
            downscale_factor=16,
            adapter_type="full_adapter_xl",
        )
        return StableDiffusionXLAdapterPipeline(**sdxl_shared_parts(tokenizer), unet=unet, adapter=adapter)
    # the SD adapter adds its first feature inside the first (cross-attention) block, at 1/8
    unet = UNet2DConditionModel(
        sample_size=8,
        block_out_channels=(16, 32),
        layers_per_block=1,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        norm_num_groups=8,
        attention_head_dim=(2, 4),
        cross_attention_dim=TEXT_HIDDEN,
    )
    adapter = T2IAdapter(channels=[16, 32], num_res_blocks=1, downscale_factor=8, adapter_type="full_adapter")
    return StableDiffusionAdapterPipeline(
        vae=_vae(),
        text_encoder=CLIPTextModel(_text_config(len(tokenizer))),
        tokenizer=tokenizer,
        unet=unet,
        adapter=adapter,
        scheduler=EulerDiscreteScheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def _tiny_t5(vocab_size: int) -> T5EncoderModel:
    return T5EncoderModel(
        T5Config(vocab_size=vocab_size, d_model=TEXT_HIDDEN, d_kv=8, d_ff=37, num_layers=1, num_heads=4)
    )


def build_tiny_qwen_image(tokenizer_dir: Path, seed: int = 0) -> QwenImageControlNetPipeline:
    """Qwen-Image with a Qwen-Image ControlNet: a tiny Qwen2.5-VL text encoder behind the small
    CLIP tokenizer (the pipeline's prompt template becomes byte-level tokens) and a tiny 3-D
    Qwen-Image VAE that downsamples by 8."""
    torch.manual_seed(seed)
    tokenizer = tiny_clip_tokenizer(tokenizer_dir)
    vocab = len(tokenizer)
    shape = {
        "patch_size": 2,
        "in_channels": 16,  # 4 latent channels packed in 2 x 2 patches
        "out_channels": 4,
        "num_layers": 1,
        "attention_head_dim": 8,
        "num_attention_heads": 2,
        "joint_attention_dim": 16,
        "axes_dims_rope": (4, 2, 2),
    }
    transformer = QwenImageTransformer2DModel(**shape, guidance_embeds=False)
    controlnet = QwenImageControlNetModel(**shape)
    _randomise(controlnet.controlnet_x_embedder, controlnet.controlnet_blocks)
    vae = AutoencoderKLQwenImage(
        base_dim=8,
        z_dim=4,
        dim_mult=[1, 2, 4, 4],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
        latents_mean=[0.0] * 4,
        latents_std=[1.0] * 4,
    )
    rope = {"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"}
    text_config = {
        "hidden_size": 16,
        "intermediate_size": 16,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "num_key_value_heads": 2,
        "rope_scaling": rope,
        "vocab_size": vocab,
        "bos_token_id": vocab - 2,
        "eos_token_id": vocab - 1,
    }
    vision_config = {
        "depth": 1,
        "hidden_size": 16,
        "intermediate_size": 16,
        "num_heads": 2,
        "out_hidden_size": 16,
    }
    config = Qwen2_5_VLConfig(
        text_config=text_config,
        vision_config=vision_config,
        vocab_size=vocab,
        bos_token_id=vocab - 2,
        eos_token_id=vocab - 1,
        vision_start_token_id=vocab - 5,
        vision_end_token_id=vocab - 4,
        vision_token_id=vocab - 3,
    )
    return QwenImageControlNetPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=vae,
        text_encoder=Qwen2_5_VLForConditionalGeneration(config),
        tokenizer=tokenizer,
        transformer=transformer,
        controlnet=controlnet,
    )


def build_tiny_hunyuandit(tokenizer_dir: Path, seed: int = 0) -> HunyuanDiTControlNetPipeline:
    """HunyuanDiT with a HunyuanDiT ControlNet: a tiny BERT with a WordPiece vocabulary written
    here, and a tiny T5 behind the same tokenizer (mT5's needs its SentencePiece model)."""
    torch.manual_seed(seed)
    tokenizer_dir.mkdir(parents=True, exist_ok=True)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *TOKENIZER_WORDS, *"abcdefghijklmnopqrstuvwxyz"]
    (tokenizer_dir / "vocab.txt").write_text("\n".join(words) + "\n", encoding="utf-8")
    tokenizer = BertTokenizer(str(tokenizer_dir / "vocab.txt"))
    shape = {
        "num_attention_heads": 2,
        "attention_head_dim": 8,
        "in_channels": 4,
        "patch_size": 2,
        "sample_size": 8,
        "hidden_size": 16,
        "cross_attention_dim": TEXT_HIDDEN,
        "cross_attention_dim_t5": TEXT_HIDDEN,
        "pooled_projection_dim": 16,
    }
    transformer = HunyuanDiT2DModel(num_layers=4, **shape)
    controlnet = HunyuanDiT2DControlNetModel(transformer_num_layers=4, **shape)
    _randomise(controlnet.input_block, controlnet.controlnet_blocks)
    bert = BertModel(
        BertConfig(
            vocab_size=len(tokenizer),
            hidden_size=TEXT_HIDDEN,
            num_hidden_layers=1,
            num_attention_heads=4,
            intermediate_size=37,
        )
    )
    return HunyuanDiTControlNetPipeline(
        vae=_vae(),
        text_encoder=bert,
        tokenizer=tokenizer,
        transformer=transformer,
        scheduler=DDPMScheduler(),
        safety_checker=None,
        feature_extractor=None,
        controlnet=controlnet,
        text_encoder_2=_tiny_t5(len(tokenizer)),
        tokenizer_2=tokenizer,
        requires_safety_checker=False,
    )


BUILDERS = {
    "sdxl-union": build_tiny_sdxl_union,
    "sd3": build_tiny_sd3,
    "flux": build_tiny_flux,
    "flux-no-mode": lambda folder, seed=0: build_tiny_flux(folder, seed, union=False),
    "t2i-adapter": build_tiny_t2i_adapter,
    "t2i-adapter-sdxl": lambda folder, seed=0: build_tiny_t2i_adapter(folder, seed, sdxl=True),
    "qwen-image": build_tiny_qwen_image,
    "hunyuandit": build_tiny_hunyuandit,
}


def build_tiny(family: str, seed: int = 0):
    """Build the tiny pipeline of ``family`` (one of :data:`FAMILIES`)."""
    with tempfile.TemporaryDirectory() as tokenizer_dir:
        pipe = BUILDERS[family](Path(tokenizer_dir), seed)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def save_tiny(family: str, path: Path) -> Path:
    """Build the tiny pipeline of ``family`` and save it under ``path`` (returned)."""
    path = Path(path)
    build_tiny(family).save_pretrained(path)
    return path
