"""Placeholder; replaced below."""
def register_with_torchgeo() -> bool:
    return False
