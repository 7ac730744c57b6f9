"""What a user does to make their own protocol: copy a bundled protocol file and edit fields."""

from pathlib import Path

import yaml

from ferbench.protocols import load_protocol


def protocol_copy(folder: Path, bundled: str, /, **changes) -> Path:
    """`folder/<bundled>-copy.yaml`: the bundled protocol with top-level fields (`name` too) replaced by `changes`."""
    raw = yaml.safe_load(load_protocol(bundled).path.read_text())
    raw.update(changes)
    out = folder / f"{bundled}-copy.yaml"
    out.write_text(yaml.safe_dump(raw, sort_keys=False))
    return out
