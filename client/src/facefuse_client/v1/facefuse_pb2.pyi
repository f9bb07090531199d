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
IMAGE_FORMAT_UNSPECIFIED: ImageFormat
JPEG: ImageFormat
PNG: ImageFormat
WEBP: ImageFormat

class FuseOptions(_message.Message):
    __slots__ = ("fuse_degree", "profile_degree", "add_label", "output_format", "output_quality")
    FUSE_DEGREE_FIELD_NUMBER: _ClassVar[int]
    PROFILE_DEGREE_FIELD_NUMBER: _ClassVar[int]
    ADD_LABEL_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FORMAT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_QUALITY_FIELD_NUMBER: _ClassVar[int]
    fuse_degree: float
    profile_degree: float
    add_label: bool
    output_format: ImageFormat
    output_quality: int
    def __init__(self, fuse_degree: _Optional[float] = ..., profile_degree: _Optional[float] = ..., add_label: _Optional[bool] = ..., output_format: _Optional[_Union[ImageFormat, str]] = ..., output_quality: _Optional[int] = ...) -> None: ...

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
    __slots__ = ("template_id", "image", "format", "quality", "warnings")
    TEMPLATE_ID_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    template_id: str
    image: bytes
    format: ImageFormat
    quality: float
    warnings: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, template_id: _Optional[str] = ..., image: _Optional[bytes] = ..., format: _Optional[_Union[ImageFormat, str]] = ..., quality: _Optional[float] = ..., warnings: _Optional[_Iterable[str]] = ...) -> None: ...

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
