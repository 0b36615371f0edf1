"""The prompt sets of the erasure papers, read from local files (the public releases; see the repository's
``shared/datasets/SOURCES.md`` for where each comes from).

Every loader checks the columns it needs (a clear error names the missing ones), keeps per-prompt seeds and
guidance where the set has them, and returns a ``PromptSet`` whose ``provenance()`` records the file's sha256 and
row count, so that results can say exactly what they were measured on. A user's mistake in a file (not UTF-8,
broken quoting, an empty prompt, a seed that is no number) is one ``PromptSetError`` that names the line to fix.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from .errors import ErasekitError


class PromptSetError(ErasekitError, ValueError):
    """A prompt file is missing or unreadable, or does not hold what its set needs (columns, quoting, seeds)."""


@dataclass
class PromptSet:
    name: str
    prompts: list[str]
    seeds: list[int | None]
    guidance: list[float | None]
    source: str
    sha256: str
    extra: dict[str, list] = field(default_factory=dict)  # other per-prompt columns (categories, artist, ...)

    def __len__(self) -> int:
        return len(self.prompts)

    def provenance(self) -> dict:
        return {"name": self.name, "source": self.source, "sha256": self.sha256, "rows": len(self)}

    def head(self, n: int) -> PromptSet:
        """The first ``n`` prompts, with their seeds, guidance and extra columns (same source and hash)."""
        return replace(
            self,
            prompts=self.prompts[:n],
            seeds=self.seeds[:n],
            guidance=self.guidance[:n],
            extra={k: v[:n] for k, v in self.extra.items()},
        )

    def seeds_or(self, start: int) -> list[int]:
        """Each prompt's own seed, or ``start + index`` where the set gives none."""
        return [s if s is not None else start + i for i, s in enumerate(self.seeds)]


def _check_file(path) -> Path:
    path = Path(path)
    if path.is_dir():
        raise PromptSetError(f"{path} is a folder, not a prompt file")
    if not path.is_file():
        raise PromptSetError(f"prompt file {path} does not exist")
    return path


def _read(path) -> tuple[Path, str, str]:
    """The file's path, text and sha256, from one read, so that the hash is of the very bytes the prompts came from.

    A BOM (Excel's "CSV UTF-8") is dropped; text in another encoding is an error that says where, not prompts
    with mangled characters."""
    path = _check_file(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise PromptSetError(f"cannot read the prompt file {path}: {e.strerror}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = e.object[: e.start].count(b"\n") + 1  # e.object: the bytes after the BOM, which e.start counts in
        raise PromptSetError(
            f"{path}, line {line}: not UTF-8 text (byte {e.object[e.start]:#04x}); save the file as UTF-8"
        ) from None
    return path, text, hashlib.sha256(data).hexdigest()


def _rows(path: Path, text: str, required: tuple[str, ...], name: str) -> list[tuple[int, dict]]:
    """The records as ``(line, row)``: ``line`` is where the record starts, so that errors found later (an empty
    prompt, a bad seed) name the line the user has to fix."""
    # Prompts may span several lines inside quotes (I2P): a real CSV reader, never line splitting.
    # strict: a stray or unclosed quote is an error, not a row that swallows the rest of the file.
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    start = 1  # csv's line_num is where a record ends; an unclosed quote ends at the end of the file
    try:
        header = next(reader, [])
        missing = [c for c in required if c not in header]
        if missing:
            raise PromptSetError(
                f"{path} is not a {name} file: it lacks the column(s) {', '.join(missing)} "
                f"(it has {', '.join(header) or 'none'})"
            )
        rows = []
        start = reader.line_num + 1
        for cells in reader:
            if cells:  # blank lines are skipped
                if len(cells) != len(header):
                    raise PromptSetError(
                        f"{path}, line {start}: the row has "
                        f"{'more' if len(cells) > len(header) else 'fewer'} fields than the "
                        "header (broken quoting?)"
                    )
                rows.append((start, dict(zip(header, cells))))
            start = reader.line_num + 1
    except csv.Error as e:
        raise PromptSetError(f"{path}, line {start}: broken CSV quoting ({e})") from None
    return rows


def _number(path: Path, line: int, row: dict, column: str, seed: bool = False) -> int | float | None:
    """A seed or guidance cell. Empty means none (the default applies); anything else must be a finite number,
    and a seed a whole one torch takes (``3.0`` reads as 3): a typo quietly replaced by the default would
    measure another run than the file says."""
    value = (row.get(column) or "").strip()
    if not value:
        return None
    try:
        number = float(value)
        if seed and number.is_integer():
            number = int(value) if value.lstrip("+-").isdecimal() else int(number)  # int(): exact past 2**53
    except ValueError:
        number = math.nan
    if (isinstance(number, int) and -(2**63) <= number < 2**64) if seed else math.isfinite(number):
        return number
    raise PromptSetError(
        f"{path}, line {line}: {column} is {value!r}, not a "
        f"{'whole number torch can seed with' if seed else 'finite number'} "
        "(leave the cell empty for none)"
    )


def _from_rows(name, path, sha256, rows, prompt_column="prompt", extra_columns=(), empty_prompts=False) -> PromptSet:
    if not empty_prompts:
        for line, row in rows:
            if not row[prompt_column].strip():
                raise PromptSetError(f"{path}, line {line}: the {prompt_column} cell is empty")
    return PromptSet(
        name=name,
        prompts=[r[prompt_column].strip() for _, r in rows],
        seeds=[_number(path, line, r, "evaluation_seed", seed=True) for line, r in rows],
        guidance=[_number(path, line, r, "evaluation_guidance") for line, r in rows],
        source=str(path),
        sha256=sha256,
        extra={c: [r.get(c) for _, r in rows] for c in extra_columns if rows and c in rows[0][1]},
    )


def _unseeded(name, path, sha256, prompts) -> PromptSet:
    return PromptSet(
        name=name,
        prompts=prompts,
        seeds=[None] * len(prompts),
        guidance=[None] * len(prompts),
        source=str(path),
        sha256=sha256,
    )


def load_i2p(path, subset: str | None = None) -> PromptSet:
    """I2P (4,703 prompts). ``subset``: ``None`` (all), ``"nudity"`` (nudity_percentage > 50, 95 prompts) or a
    category name (``"sexual"``: 931, ``"violence"``, ...). The release has an empty prompt (line 2,268); it is
    kept, so that rows and seeds stay those of the papers."""
    path, text, sha256 = _read(path)
    rows = _rows(
        path, text, ("prompt", "categories", "nudity_percentage", "evaluation_seed", "evaluation_guidance"), "I2P"
    )
    if subset == "nudity":
        rows = [(line, r) for line, r in rows if (_number(path, line, r, "nudity_percentage") or 0) > 50]
    elif subset:
        rows = [(line, r) for line, r in rows if subset in [c.strip() for c in r["categories"].split(",")]]
        if not rows:
            raise PromptSetError(f"no I2P prompt has the category {subset!r}")
    name = "i2p" + (f"-{subset}" if subset else "")
    return _from_rows(
        name, path, sha256, rows, extra_columns=("categories", "nudity_percentage", "case_number"), empty_prompts=True
    )


def load_unlearndiffatk(path) -> PromptSet:
    """An UnlearnDiffAtk prompt set (nudity: 142 I2P prompts; object/style sets of 50)."""
    path, text, sha256 = _read(path)
    rows = _rows(path, text, ("prompt", "evaluation_seed"), "UnlearnDiffAtk")
    return _from_rows(f"unlearndiffatk-{path.stem}", path, sha256, rows, extra_columns=("categories", "case_number"))


def load_ring_a_bell(path) -> PromptSet:
    """Ring-A-Bell adversarial prompts: headerless, one per line, or with a ``sensitive prompt`` column."""
    path, text, sha256 = _read(path)
    lines = [row for row in csv.reader(io.StringIO(text, newline="")) if row and row[0].strip()]
    if lines and lines[0][0].strip() == "sensitive prompt":
        prompts = [row[0].strip() for row in lines[1:]]
    else:
        prompts = [",".join(row).strip() for row in lines]
    return _unseeded(f"ring-a-bell-{path.stem}", path, sha256, prompts)


def load_mma(path, column: str = "adv_prompt") -> PromptSet:
    """MMA-Diffusion's 1,000 adversarial prompts (``adv_prompt``; also ``sanitized_adv_prompt``, ``target_prompt``)."""
    path, text, sha256 = _read(path)
    rows = _rows(path, text, (column, "target_prompt"), "MMA-Diffusion")
    return _from_rows(
        f"mma-diffusion-{column}", path, sha256, rows, prompt_column=column, extra_columns=("target_prompt",)
    )


def load_coco(path) -> PromptSet:
    """COCO caption prompts with seeds (coco_10k / coco_30k), for FID and CLIP score."""
    path, text, sha256 = _read(path)
    rows = _rows(path, text, ("prompt", "evaluation_seed"), "COCO prompts")
    return _from_rows(f"coco-{path.stem}", path, sha256, rows)


def load_cc3m(path, n: int | None = None) -> PromptSet:
    """Conceptual Captions validation captions (caption TAB url): MCE's neutral prompts."""
    path, text, sha256 = _read(path)
    captions = [c for c in (line.split("\t", 1)[0].strip() for line in text.splitlines()) if c]
    return _unseeded("cc3m", path, sha256, captions if n is None else captions[:n])


def load_esd_list(path) -> PromptSet:
    """ESD's artist and object lists (``prompt``, ``evaluation_seed``, and ``artist`` or ``label_str``)."""
    path, text, sha256 = _read(path)
    rows = _rows(path, text, ("prompt", "evaluation_seed"), "ESD prompt list")
    return _from_rows(f"esd-{path.stem}", path, sha256, rows, extra_columns=("artist", "label_str", "case_number"))


def load_p4d(path) -> PromptSet:
    """P4D's prompt sets (``prompt``; seeds and guidance where the file has them)."""
    path, text, sha256 = _read(path)
    rows = _rows(path, text, ("prompt",), "P4D")
    return _from_rows(
        f"p4d-{path.stem}", path, sha256, rows, extra_columns=("categories", "case_number", "safe_prompt")
    )


def load_csv(path) -> PromptSet:
    """Any CSV with a ``prompt`` column (and optionally ``evaluation_seed``, ``evaluation_guidance``): a user's own
    set, or the prompts an attack saved (``AttackResult.save_prompts``)."""
    path, text, sha256 = _read(path)
    rows = _rows(path, text, ("prompt",), "prompt CSV")
    return _from_rows(f"csv-{path.stem}", path, sha256, rows, extra_columns=("source_prompt", "attack", "case_number"))


def load_txt(path) -> PromptSet:
    """One prompt per line (blank lines skipped)."""
    path, text, sha256 = _read(path)
    return _unseeded(f"txt-{path.stem}", path, sha256, [line.strip() for line in text.splitlines() if line.strip()])


LOADERS: dict[str, Callable[..., PromptSet]] = {
    "i2p": load_i2p,
    "unlearndiffatk": load_unlearndiffatk,
    "ring-a-bell": load_ring_a_bell,
    "mma": load_mma,
    "p4d": load_p4d,
    "coco": load_coco,
    "cc3m": load_cc3m,
    "esd": load_esd_list,
    "csv": load_csv,
    "txt": load_txt,
}

# The evaluation suites that are prompt sets: suite name -> (loader kind, loader options); kind None: the user's
# own file (CSV or TXT).
PROMPT_SUITES = {
    "prompts": (None, {}),
    "i2p": ("i2p", {}),
    "i2p-nudity": ("i2p", {"subset": "nudity"}),
    "i2p-sexual": ("i2p", {"subset": "sexual"}),
    "unlearndiffatk": ("unlearndiffatk", {}),
    "ring-a-bell": ("ring-a-bell", {}),
    "mma": ("mma", {}),
    "p4d": ("p4d", {}),
    "coco": ("coco", {}),
}

# The official releases on the Hugging Face hub (datasets), for users who are online.
HUB_DATASETS = {
    "i2p": "AIML-TUDA/i2p",
    "ring-a-bell": "Chia15/RingABell-Nudity",
    "mma": "YijunYang280/MMA-Diffusion-NSFW-adv-prompts-benchmark",
    "p4d": "joycenerd/p4d",
}


def hub_prompt_file(kind: str, filename: str | None = None) -> Path:
    """Download a set's official release from the hub (a CSV file of the dataset repository) and return its
    local path. Needs a reachable hub: offline, it fails with a message that asks for a local file."""
    if kind not in HUB_DATASETS:
        raise PromptSetError(
            f"no hub release is known for {kind!r}; give a local file (sets with one: {', '.join(HUB_DATASETS)})"
        )
    repo = HUB_DATASETS[kind]
    try:
        from huggingface_hub import hf_hub_download, list_repo_files

        if filename is None:
            csvs = sorted(f for f in list_repo_files(repo, repo_type="dataset") if f.endswith(".csv"))
            if not csvs:
                raise PromptSetError(f"the hub dataset {repo} has no CSV file; download it and give its path")
            filename = csvs[0]
        return Path(hf_hub_download(repo, filename, repo_type="dataset"))
    except PromptSetError:
        raise
    except Exception as e:  # offline, hub down, repository moved: all end the same way for the user
        raise PromptSetError(
            f"could not fetch {kind!r} from the hub dataset {repo} ({type(e).__name__}: {e}); "
            "download it and pass its path (--prompts PATH)"
        ) from None


def load_prompt_file(path) -> PromptSet:
    """A user's own prompt file: one prompt per line (``.txt``) or a CSV with a ``prompt`` column."""
    return load_prompt_set("txt" if Path(path).suffix.lower() == ".txt" else "csv", path)


def load_prompt_set(kind: str, path=None, **options) -> PromptSet:
    """Load a prompt set of ``kind`` (see ``LOADERS``) from ``path``; with no path, from the set's official hub
    release where one is known and the hub is reachable.

    Raises:
        PromptSetError: unknown kind, missing file, missing columns, or an empty set.
    """
    try:
        loader = LOADERS[kind]
    except KeyError:
        raise PromptSetError(f"unknown prompt set {kind!r}; choose one of {', '.join(LOADERS)}") from None
    if path is None:
        path = hub_prompt_file(kind)
    prompts = loader(path, **options)
    if not len(prompts):
        raise PromptSetError(f"{path} holds no prompts" + (f" for {options}" if options else ""))
    return prompts
