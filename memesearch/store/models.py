"""Plain records the stores return. No behaviour, no database handles."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Folder:
    id: int
    path: str
    added_at: float
    auto_scan_minutes: int = 0
    last_scan_at: float | None = None
    last_scan: dict | None = None


@dataclass
class Description:
    model_id: str
    text: str
    backend: str = ""
    dtype: str = ""
    revision: str = ""
    ms: float | None = None
    created_at: float = 0.0


@dataclass
class Meme:
    id: int
    path: str
    folder_id: int | None
    sha256: str | None
    phash: str | None
    size: int
    mtime: float
    width: int | None
    height: int | None
    format: str | None
    frames: int | None
    status: str
    error: str | None
    duplicate_of: int | None
    ocr_text: str
    ocr_engine: str | None
    user_description: str
    added_at: float
    updated_at: float
    tags: list[str] = field(default_factory=list)
    descriptions: list[Description] = field(default_factory=list)

    @property
    def description(self) -> str:
        """The newest generated description ('' until a captioner has run)."""
        if not self.descriptions:
            return ""
        return max(self.descriptions, key=lambda d: d.created_at).text


@dataclass
class Tag:
    name: str
    count: int  # memes carrying it (present or not)
    color: str | None = None  # a name from library.tag_colors.TAG_COLORS


@dataclass
class FileRecord:
    """What the scanner learned about one file on disk."""

    path: str
    folder_id: int | None
    size: int
    mtime: float
    sha256: str | None = None
    phash: str | None = None
    width: int | None = None
    height: int | None = None
    format: str | None = None
    frames: int | None = None
    status: str = "ok"
    error: str | None = None


@dataclass
class Filters:
    """Search filters; ``None`` means "do not filter on this"."""

    tags: list[str] = field(default_factory=list)
    folders: list[str] = field(default_factory=list)
    formats: list[str] = field(default_factory=list)
    described: bool | None = None
    include_missing: bool = False
    #: ``template:GROUP_ID``: members of these template groups (every one of them).
    templates: list[int] = field(default_factory=list)
    #: ``same:MEME_ID``: memes sharing these memes' templates (the memes themselves included).
    same: list[int] = field(default_factory=list)

    def is_empty(self) -> bool:
        return not (self.tags or self.folders or self.formats or self.described is not None
                    or self.templates or self.same)
