"""The public face of one memory space: SpaceView (read; engram/space/view.py) and Space
(the owner's: read and write; engram/space/owner.py)."""
from engram.space.owner import ROUTINGS, Space
from engram.space.view import SpaceView

__all__ = ["ROUTINGS", "Space", "SpaceView"]
