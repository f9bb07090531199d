from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ImageFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    IMAGE_FORMAT_UNSPECIFIED: _ClassVar[ImageFormat]
    JPEG: _ClassVar[ImageFormat]
    PNG: _ClassVar[ImageFormat]
    WEBP: _ClassVar[ImageFormat]

class VideoJobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VIDEO_JOB_STATE_UNSPECIFIED: _ClassVar[VideoJobState]
    VIDEO_JOB_QUEUED: _ClassVar[VideoJobState]
    VIDEO_JOB_RUNNING: _ClassVar[VideoJobState]
    VIDEO_JOB_DONE: _ClassVar[VideoJobState]
    VIDEO_JOB_FAILED: _ClassVar[VideoJobState]
    VIDEO_JOB_CANCELLED: _ClassVar[VideoJobState]
    VIDEO_JOB_EXPIRED: _ClassVar[VideoJobState]
IMAGE_FORMAT_UNSPECIFIED: ImageFormat
JPEG: ImageFormat
PNG: ImageFormat
WEBP: ImageFormat
VIDEO_JOB_STATE_UNSPECIFIED: VideoJobState
VIDEO_JOB_QUEUED: VideoJobState
VIDEO_JOB_RUNNING: VideoJobState
VIDEO_JOB_DONE: VideoJobState
VIDEO_JOB_FAILED: VideoJobState
VIDEO_JOB_CANCELLED: VideoJobState
VIDEO_JOB_EXPIRED: VideoJobState

class BeautyOptions(_message.Message):
    __slots__ = ("smoothing", "brightening", "slimming", "eye_enlarging")
    SMOOTHING_FIELD_NUMBER: _ClassVar[int]
    BRIGHTENING_FIELD_NUMBER: _ClassVar[int]
    SLIMMING_FIELD_NUMBER: _ClassVar[int]
    EYE_ENLARGING_FIELD_NUMBER: _ClassVar[int]
    smoothing: float
    brightening: float
    slimming: float
    eye_enlarging: float
    def __init__(self, smoothing: _Optional[float] = ..., brightening: _Optional[float] = ..., slimming: _Optional[float] = ..., eye_enlarging: _Optional[float] = ...) -> None: ...

class FuseOptions(_message.Message):
    __slots__ = ("fuse_degree", "profile_degree", "add_label", "output_format", "output_quality", "beauty")
    FUSE_DEGREE_FIELD_NUMBER: _ClassVar[int]
    PROFILE_DEGREE_FIELD_NUMBER: _ClassVar[int]
    ADD_LABEL_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FORMAT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_QUALITY_FIELD_NUMBER: _ClassVar[int]
    BEAUTY_FIELD_NUMBER: _ClassVar[int]
    fuse_degree: float
    profile_degree: float
    add_label: bool
    output_format: ImageFormat
    output_quality: int
    beauty: BeautyOptions
    def __init__(self, fuse_degree: _Optional[float] = ..., profile_degree: _Optional[float] = ..., add_label: _Optional[bool] = ..., output_format: _Optional[_Union[ImageFormat, str]] = ..., output_quality: _Optional[int] = ..., beauty: _Optional[_Union[BeautyOptions, _Mapping]] = ...) -> None: ...

class FaceMapping(_message.Message):
    __slots__ = ("photo", "template_face_index")
    PHOTO_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_FACE_INDEX_FIELD_NUMBER: _ClassVar[int]
    photo: bytes
    template_face_index: int
    def __init__(self, photo: _Optional[bytes] = ..., template_face_index: _Optional[int] = ...) -> None: ...

class FuseRequest(_message.Message):
    __slots__ = ("template_id", "photo", "template_face_index", "faces", "options", "request_id")
    TEMPLATE_ID_FIELD_NUMBER: _ClassVar[int]
    PHOTO_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_FACE_INDEX_FIELD_NUMBER: _ClassVar[int]
    FACES_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    template_id: str
    photo: bytes
    template_face_index: int
    faces: _containers.RepeatedCompositeFieldContainer[FaceMapping]
    options: FuseOptions
    request_id: str
    def __init__(self, template_id: _Optional[str] = ..., photo: _Optional[bytes] = ..., template_face_index: _Optional[int] = ..., faces: _Optional[_Iterable[_Union[FaceMapping, _Mapping]]] = ..., options: _Optional[_Union[FuseOptions, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class Poster(_message.Message):
    __slots__ = ("template_id", "image", "format", "quality", "warnings", "photo_quality", "photo_warnings")
    TEMPLATE_ID_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    PHOTO_QUALITY_FIELD_NUMBER: _ClassVar[int]
    PHOTO_WARNINGS_FIELD_NUMBER: _ClassVar[int]
    template_id: str
    image: bytes
    format: ImageFormat
    quality: float
    warnings: _containers.RepeatedScalarFieldContainer[str]
    photo_quality: float
    photo_warnings: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, template_id: _Optional[str] = ..., image: _Optional[bytes] = ..., format: _Optional[_Union[ImageFormat, str]] = ..., quality: _Optional[float] = ..., warnings: _Optional[_Iterable[str]] = ..., photo_quality: _Optional[float] = ..., photo_warnings: _Optional[_Iterable[str]] = ...) -> None: ...

class FuseResponse(_message.Message):
    __slots__ = ("request_id", "poster")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    POSTER_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    poster: Poster
    def __init__(self, request_id: _Optional[str] = ..., poster: _Optional[_Union[Poster, _Mapping]] = ...) -> None: ...

class FuseManyRequest(_message.Message):
    __slots__ = ("photo", "template_ids", "options", "request_id")
    PHOTO_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_IDS_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    photo: bytes
    template_ids: _containers.RepeatedScalarFieldContainer[str]
    options: FuseOptions
    request_id: str
    def __init__(self, photo: _Optional[bytes] = ..., template_ids: _Optional[_Iterable[str]] = ..., options: _Optional[_Union[FuseOptions, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class FuseManyResponse(_message.Message):
    __slots__ = ("request_id", "posters")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    POSTERS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    posters: _containers.RepeatedCompositeFieldContainer[Poster]
    def __init__(self, request_id: _Optional[str] = ..., posters: _Optional[_Iterable[_Union[Poster, _Mapping]]] = ...) -> None: ...

class BeautifyRequest(_message.Message):
    __slots__ = ("photo", "beauty", "face_index", "add_label", "output_format", "output_quality", "request_id")
    PHOTO_FIELD_NUMBER: _ClassVar[int]
    BEAUTY_FIELD_NUMBER: _ClassVar[int]
    FACE_INDEX_FIELD_NUMBER: _ClassVar[int]
    ADD_LABEL_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FORMAT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_QUALITY_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    photo: bytes
    beauty: BeautyOptions
    face_index: int
    add_label: bool
    output_format: ImageFormat
    output_quality: int
    request_id: str
    def __init__(self, photo: _Optional[bytes] = ..., beauty: _Optional[_Union[BeautyOptions, _Mapping]] = ..., face_index: _Optional[int] = ..., add_label: _Optional[bool] = ..., output_format: _Optional[_Union[ImageFormat, str]] = ..., output_quality: _Optional[int] = ..., request_id: _Optional[str] = ...) -> None: ...

class BeautifyResponse(_message.Message):
    __slots__ = ("request_id", "image", "format")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    image: bytes
    format: ImageFormat
    def __init__(self, request_id: _Optional[str] = ..., image: _Optional[bytes] = ..., format: _Optional[_Union[ImageFormat, str]] = ...) -> None: ...

class ListTemplatesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TemplateInfo(_message.Message):
    __slots__ = ("template_id", "version", "face_count", "width", "height")
    TEMPLATE_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    FACE_COUNT_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    template_id: str
    version: int
    face_count: int
    width: int
    height: int
    def __init__(self, template_id: _Optional[str] = ..., version: _Optional[int] = ..., face_count: _Optional[int] = ..., width: _Optional[int] = ..., height: _Optional[int] = ...) -> None: ...

class ListTemplatesResponse(_message.Message):
    __slots__ = ("templates",)
    TEMPLATES_FIELD_NUMBER: _ClassVar[int]
    templates: _containers.RepeatedCompositeFieldContainer[TemplateInfo]
    def __init__(self, templates: _Optional[_Iterable[_Union[TemplateInfo, _Mapping]]] = ...) -> None: ...

class VideoOptions(_message.Message):
    __slots__ = ("fuse_degree", "profile_degree", "add_label")
    FUSE_DEGREE_FIELD_NUMBER: _ClassVar[int]
    PROFILE_DEGREE_FIELD_NUMBER: _ClassVar[int]
    ADD_LABEL_FIELD_NUMBER: _ClassVar[int]
    fuse_degree: float
    profile_degree: float
    add_label: bool
    def __init__(self, fuse_degree: _Optional[float] = ..., profile_degree: _Optional[float] = ..., add_label: _Optional[bool] = ...) -> None: ...

class SubmitVideoJobRequest(_message.Message):
    __slots__ = ("photo", "template_id", "options")
    PHOTO_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_ID_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    photo: bytes
    template_id: str
    options: VideoOptions
    def __init__(self, photo: _Optional[bytes] = ..., template_id: _Optional[str] = ..., options: _Optional[_Union[VideoOptions, _Mapping]] = ...) -> None: ...

class VideoJob(_message.Message):
    __slots__ = ("job_id", "state", "template_id", "queue_position", "progress", "frames_done", "frame_count", "eta_s", "failure_reason", "failure_detail", "created_unix_s", "expires_unix_s", "result_url", "result_url_expires_unix_s")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_ID_FIELD_NUMBER: _ClassVar[int]
    QUEUE_POSITION_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    FRAMES_DONE_FIELD_NUMBER: _ClassVar[int]
    FRAME_COUNT_FIELD_NUMBER: _ClassVar[int]
    ETA_S_FIELD_NUMBER: _ClassVar[int]
    FAILURE_REASON_FIELD_NUMBER: _ClassVar[int]
    FAILURE_DETAIL_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_S_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_UNIX_S_FIELD_NUMBER: _ClassVar[int]
    RESULT_URL_FIELD_NUMBER: _ClassVar[int]
    RESULT_URL_EXPIRES_UNIX_S_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    state: VideoJobState
    template_id: str
    queue_position: int
    progress: float
    frames_done: int
    frame_count: int
    eta_s: float
    failure_reason: str
    failure_detail: str
    created_unix_s: float
    expires_unix_s: float
    result_url: str
    result_url_expires_unix_s: float
    def __init__(self, job_id: _Optional[str] = ..., state: _Optional[_Union[VideoJobState, str]] = ..., template_id: _Optional[str] = ..., queue_position: _Optional[int] = ..., progress: _Optional[float] = ..., frames_done: _Optional[int] = ..., frame_count: _Optional[int] = ..., eta_s: _Optional[float] = ..., failure_reason: _Optional[str] = ..., failure_detail: _Optional[str] = ..., created_unix_s: _Optional[float] = ..., expires_unix_s: _Optional[float] = ..., result_url: _Optional[str] = ..., result_url_expires_unix_s: _Optional[float] = ...) -> None: ...

class GetVideoJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class CancelVideoJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class ReadVideoResultRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class VideoChunk(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...

class ListVideoTemplatesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class VideoTemplateInfo(_message.Message):
    __slots__ = ("template_id", "version", "width", "height", "fps", "frame_count", "duration_s")
    TEMPLATE_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    FPS_FIELD_NUMBER: _ClassVar[int]
    FRAME_COUNT_FIELD_NUMBER: _ClassVar[int]
    DURATION_S_FIELD_NUMBER: _ClassVar[int]
    template_id: str
    version: int
    width: int
    height: int
    fps: float
    frame_count: int
    duration_s: float
    def __init__(self, template_id: _Optional[str] = ..., version: _Optional[int] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., fps: _Optional[float] = ..., frame_count: _Optional[int] = ..., duration_s: _Optional[float] = ...) -> None: ...

class ListVideoTemplatesResponse(_message.Message):
    __slots__ = ("templates",)
    TEMPLATES_FIELD_NUMBER: _ClassVar[int]
    templates: _containers.RepeatedCompositeFieldContainer[VideoTemplateInfo]
    def __init__(self, templates: _Optional[_Iterable[_Union[VideoTemplateInfo, _Mapping]]] = ...) -> None: ...
