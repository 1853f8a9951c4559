"""A text file of image URLs, one ``class url`` pair per line, for images you already found."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from descend.crawl.config import ClassSpec
from descend.crawl.sources.base import PageGetter, Source, SourceOption
from descend.crawl.sources.registry import SOURCES
from descend.errors import ConfigError

URLS_FILE = SourceOption("urls_file", metavar="FILE", type=Path,
                         help="for --source urls: lines 'class url' ('#' comments); without "
                         "--class, the classes are those of the file")


@SOURCES.register("urls")
class UrlListSource(Source):
    """Reads ``--urls-file``: ``class<TAB or spaces>url`` per line; ``#`` starts a comment.

    One file serves every class (the class column picks the lines); it takes no base URL, since
    the file holds whole URLs. URLs are not checked here: a bad scheme is rejected, with its
    reason in the manifest, like any other bad candidate.
    """

    options = (URLS_FILE,)

    def __init__(self, urls_file: Path | None = None) -> None:
        if urls_file is None:
            raise ConfigError("--source urls needs --urls-file FILE (lines: class url)")
        self.by_class = read_urls_file(Path(urls_file))

    def classes(self) -> list[str]:
        """Class names in the order they first appear in the file."""
        return list(self.by_class)

    def search_words(self, spec: ClassSpec) -> tuple[str, ...]:
        """One "word", the class name: the file's class column picks the lines, and its one
        page holds them all."""
        return (spec.name,)

    async def page(self, class_name: str, word: str, page: int, get: PageGetter) -> list[str]:
        return list(self.by_class.get(class_name, [])) if page == 0 else []


def read_urls_file(path: Path) -> dict[str, list[str]]:
    """class -> URLs, in file order; `ConfigError` naming the line for anything malformed."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise ConfigError(f"cannot read --urls-file {path}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"--urls-file {path} is not UTF-8 text") from None
    by_class: dict[str, list[str]] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split(None, 1)
        if len(fields) != 2 or urlsplit(fields[0]).scheme:
            raise ConfigError(
                f"{path}:{number}: expected 'class url' (class, then spaces or a tab, then the "
                f"URL), got {raw!r}"
            )
        by_class.setdefault(fields[0], []).append(fields[1].strip())
    return by_class
