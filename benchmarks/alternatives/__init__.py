"""Worker scripts that run the other tools, each in its own process (see ``common.py``)."""
