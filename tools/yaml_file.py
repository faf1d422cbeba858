"""Read a YAML (or JSON) file that a person wrote, with one line for every way it can be wrong.

`tunecrew run -c FILE.yaml` and `--contract FILE` both read one; the line names the file, what went
wrong and where (line and column for a syntax error), never a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


class YamlFileError(ValueError):
    """The file cannot be read as YAML; the message is the one line to show."""


def load_yaml_file(path: str | Path, noun: str, takes: str) -> Any:
    """The file's YAML document (None when empty or only comments). `noun` names the file in the
    line ("config file"), `takes` finishes its hints ("-c takes a YAML file")."""
    import yaml

    where = str(path)
    try:
        text = Path(path).expanduser().read_text(encoding="utf-8")
    except FileNotFoundError:
        raise YamlFileError(f"{where}: no such {noun}") from None
    except IsADirectoryError:
        raise YamlFileError(f"{where}: is a folder; {takes}") from None
    except UnicodeDecodeError:
        raise YamlFileError(f"{where}: not UTF-8 text; {takes}") from None
    except OSError as exc:
        raise YamlFileError(f"{where}: cannot be read ({exc.strerror or exc})") from None
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise YamlFileError(f"{where}: YAML syntax error{at}: {' '.join(str(exc.problem or exc).split())}") from None
    except yaml.YAMLError as exc:
        raise YamlFileError(f"{where}: not YAML: {' '.join(str(exc).split())[:160]}") from None
    except (ValueError, RecursionError) as exc:  # a timestamp that is no date; nesting past Python's stack
        raise YamlFileError(f"{where}: YAML value cannot be read: {' '.join(str(exc).split())[:120]}") from None
