"""The load test's request mix, shared by the Locust users and the report."""

SINGLE_FACE_TEMPLATES = ("hopper-portrait", "astronaut-poster", "painted-hopper", "comic-astronaut")
FUSE_MANY_TEMPLATES = SINGLE_FACE_TEMPLATES + ("group-six",)

FUSE, FUSE_MANY, BAD_PHOTO, BEAUTIFY = "Fuse", "FuseMany", "Fuse bad photo", "Beautify"
# Task weights: most calls are one poster, about a fifth are five, ~5% are bad photos,
# and about one in eight is a photo beautified (Beautify: all four effects).
WEIGHTS = {FUSE: 14, FUSE_MANY: 4, BAD_PHOTO: 1, BEAUTIFY: 3}
# Posters each request name yields: throughput is counted in posters (a beautified
# photo counts as one: one image encoded and sent back).
POSTERS_PER_REQUEST = {FUSE: 1, FUSE_MANY: len(FUSE_MANY_TEMPLATES), BAD_PHOTO: 0, BEAUTIFY: 1}
# A third of Fuse calls ask for beauty on the poster as well; Beautify's values.
FUSE_BEAUTY_SHARE = 1 / 3
BEAUTY_VALUES = {"smoothing": 50.0, "brightening": 40.0, "slimming": 30.0, "eye_enlarging": 30.0}
# The interactive calls: the report's photo latency is theirs alone.
PHOTO_NAMES = tuple(WEIGHTS)

# Video users (a set share of the users) submit a job, poll it and download the MP4.
# Each step is its own Locust entry, so the video rows never mix into the photo rows:
VIDEO_SUBMIT, VIDEO_POLL, VIDEO_DOWNLOAD = "Video submit", "Video poll", "Video download"
# submit to downloaded result, queue wait included: the job latency a caller sees.
VIDEO_JOB = "Video job"
# first poll seeing the job running to the poll seeing it done; its response length is
# the job's frame count, so frames / running seconds is a worker's frame rate.
VIDEO_RUNNING = "Video job running"
VIDEO_NAMES = (VIDEO_SUBMIT, VIDEO_POLL, VIDEO_DOWNLOAD, VIDEO_JOB, VIDEO_RUNNING)
DEFAULT_VIDEO_TEMPLATE = "talking-head"
