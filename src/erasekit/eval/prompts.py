"""The prompt sets of the erasure papers, read from local files (the public releases; see the repository's
``shared/datasets/SOURCES.md`` for where each comes from).

Every loader checks the columns it needs (a clear error names the missing ones), keeps per-prompt seeds and
guidance where the set has them, and returns a ``PromptSet`` whose ``provenance()`` records the file's sha256 and
row count, so that results can say exactly what they were measured on.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..errors import ErasekitError


class PromptSetError(ErasekitError, ValueError):
    """A prompt file is missing, or lacks the columns its set needs."""


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
        return replace(self, prompts=self.prompts[:n], seeds=self.seeds[:n], guidance=self.guidance[:n],
                       extra={k: v[:n] for k, v in self.extra.items()})

    def seeds_or(self, start: int) -> list[int]:
        """Each prompt's own seed, or ``start + index`` where the set gives none."""
        return [s if s is not None else start + i for i, s in enumerate(self.seeds)]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _check_file(path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise PromptSetError(f"prompt file {path} does not exist")
    return path


def _rows(path: Path, required: tuple[str, ...], name: str) -> list[dict]:
    # Prompts may span several lines inside quotes (I2P): a real CSV reader, never line splitting.
    with open(path, newline="", encoding="utf-8") as f:
        # strict: a stray or unclosed quote is an error, not a row that swallows the rest of the file.
        reader = csv.DictReader(f, strict=True)
        try:
            missing = [c for c in required if c not in (reader.fieldnames or [])]
            if missing:
                raise PromptSetError(f"{path} is not a {name} file: it lacks the column(s) {', '.join(missing)} "
                                     f"(it has {', '.join(reader.fieldnames or []) or 'none'})")
            rows = []
            for row in reader:
                if None in row or any(value is None for value in row.values()):
                    raise PromptSetError(f"{path}, line {reader.line_num}: the row has "
                                         f"{'more' if None in row else 'fewer'} fields than the header "
                                         "(broken quoting?)")
                rows.append(row)
        except csv.Error as e:
            raise PromptSetError(f"{path}, line {reader.line_num}: broken CSV quoting ({e})") from None
        return rows


def _int(value) -> int | None:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return None


def _float(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _from_rows(name, path, rows, prompt_column="prompt", extra_columns=()) -> PromptSet:
    return PromptSet(
        name=name, prompts=[r[prompt_column].strip() for r in rows],
        seeds=[_int(r.get("evaluation_seed")) for r in rows],
        guidance=[_float(r.get("evaluation_guidance")) for r in rows],
        source=str(path), sha256=_sha256(path),
        extra={c: [r.get(c) for r in rows] for c in extra_columns if rows and c in rows[0]},
    )


def load_i2p(path, subset: str | None = None) -> PromptSet:
    """I2P (4,703 prompts). ``subset``: ``None`` (all), ``"nudity"`` (nudity_percentage > 50, 95 prompts) or a
    category name (``"sexual"``: 931, ``"violence"``, ...)."""
    path = _check_file(path)
    rows = _rows(path, ("prompt", "categories", "nudity_percentage", "evaluation_seed", "evaluation_guidance"), "I2P")
    if subset == "nudity":
        rows = [r for r in rows if (_float(r["nudity_percentage"]) or 0) > 50]
    elif subset:
        rows = [r for r in rows if subset in [c.strip() for c in r["categories"].split(",")]]
        if not rows:
            raise PromptSetError(f"no I2P prompt has the category {subset!r}")
    name = "i2p" + (f"-{subset}" if subset else "")
    return _from_rows(name, path, rows, extra_columns=("categories", "nudity_percentage", "case_number"))


def load_unlearndiffatk(path) -> PromptSet:
    """An UnlearnDiffAtk prompt set (nudity: 142 I2P prompts; object/style sets of 50)."""
    path = _check_file(path)
    rows = _rows(path, ("prompt", "evaluation_seed"), "UnlearnDiffAtk")
    return _from_rows(f"unlearndiffatk-{path.stem}", path, rows, extra_columns=("categories", "case_number"))


def load_ring_a_bell(path) -> PromptSet:
    """Ring-A-Bell adversarial prompts: headerless, one per line, or with a ``sensitive prompt`` column."""
    path = _check_file(path)
    with open(path, newline="", encoding="utf-8") as f:
        lines = [row for row in csv.reader(f) if row and row[0].strip()]
    if lines and lines[0][0].strip() == "sensitive prompt":
        prompts = [row[0].strip() for row in lines[1:]]
    else:
        prompts = [",".join(row).strip() for row in lines]
    return PromptSet(name=f"ring-a-bell-{path.stem}", prompts=prompts, seeds=[None] * len(prompts),
                     guidance=[None] * len(prompts), source=str(path), sha256=_sha256(path))


def load_mma(path, column: str = "adv_prompt") -> PromptSet:
    """MMA-Diffusion's 1,000 adversarial prompts (``adv_prompt``; also ``sanitized_adv_prompt``, ``target_prompt``)."""
    path = _check_file(path)
    rows = _rows(path, (column, "target_prompt"), "MMA-Diffusion")
    return _from_rows(f"mma-diffusion-{column}", path, rows, prompt_column=column, extra_columns=("target_prompt",))


def load_coco(path) -> PromptSet:
    """COCO caption prompts with seeds (coco_10k / coco_30k), for FID and CLIP score."""
    path = _check_file(path)
    rows = _rows(path, ("prompt", "evaluation_seed"), "COCO prompts")
    return _from_rows(f"coco-{path.stem}", path, rows)


def load_cc3m(path, n: int | None = None) -> PromptSet:
    """Conceptual Captions validation captions (caption TAB url): MCE's neutral prompts."""
    path = _check_file(path)
    prompts = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            caption = line.split("\t", 1)[0].strip()
            if caption:
                prompts.append(caption)
            if n is not None and len(prompts) >= n:
                break
    return PromptSet(name="cc3m", prompts=prompts, seeds=[None] * len(prompts), guidance=[None] * len(prompts),
                     source=str(path), sha256=_sha256(path))


def load_esd_list(path) -> PromptSet:
    """ESD's artist and object lists (``prompt``, ``evaluation_seed``, and ``artist`` or ``label_str``)."""
    path = _check_file(path)
    rows = _rows(path, ("prompt", "evaluation_seed"), "ESD prompt list")
    return _from_rows(f"esd-{path.stem}", path, rows, extra_columns=("artist", "label_str", "case_number"))


def load_p4d(path) -> PromptSet:
    """P4D's prompt sets (``prompt``; seeds and guidance where the file has them)."""
    path = _check_file(path)
    rows = _rows(path, ("prompt",), "P4D")
    return _from_rows(f"p4d-{path.stem}", path, rows, extra_columns=("categories", "case_number", "safe_prompt"))


def load_csv(path) -> PromptSet:
    """Any CSV with a ``prompt`` column (and optionally ``evaluation_seed``, ``evaluation_guidance``): a user's own
    set, or the prompts an attack saved (``AttackResult.save_prompts``)."""
    path = _check_file(path)
    rows = _rows(path, ("prompt",), "prompt CSV")
    return _from_rows(f"csv-{path.stem}", path, rows, extra_columns=("source_prompt", "attack", "case_number"))


def load_txt(path) -> PromptSet:
    """One prompt per line (blank lines skipped)."""
    path = _check_file(path)
    prompts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return PromptSet(name=f"txt-{path.stem}", prompts=prompts, seeds=[None] * len(prompts),
                     guidance=[None] * len(prompts), source=str(path), sha256=_sha256(path))


LOADERS: dict[str, Callable[..., PromptSet]] = {
    "i2p": load_i2p, "unlearndiffatk": load_unlearndiffatk, "ring-a-bell": load_ring_a_bell, "mma": load_mma,
    "p4d": load_p4d, "coco": load_coco, "cc3m": load_cc3m, "esd": load_esd_list, "csv": load_csv, "txt": load_txt,
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
        raise PromptSetError(f"no hub release is known for {kind!r}; give a local file (sets with one: "
                             f"{', '.join(HUB_DATASETS)})")
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
        raise PromptSetError(f"could not fetch {kind!r} from the hub dataset {repo} ({type(e).__name__}: {e}); "
                             "download it and pass its path (--prompts PATH)") from None


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
