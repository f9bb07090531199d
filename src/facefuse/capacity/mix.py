"""The load test's request mix, shared by the Locust users and the report."""

SINGLE_FACE_TEMPLATES = ("hopper-portrait", "astronaut-poster", "painted-hopper", "comic-astronaut")
FUSE_MANY_TEMPLATES = SINGLE_FACE_TEMPLATES + ("group-six",)

FUSE, FUSE_MANY, BAD_PHOTO = "Fuse", "FuseMany", "Fuse bad photo"
# Task weights: most calls are one poster, about a fifth are five, ~5% are bad photos.
WEIGHTS = {FUSE: 14, FUSE_MANY: 4, BAD_PHOTO: 1}
# Posters each request name yields: throughput is counted in posters.
POSTERS_PER_REQUEST = {FUSE: 1, FUSE_MANY: len(FUSE_MANY_TEMPLATES), BAD_PHOTO: 0}
