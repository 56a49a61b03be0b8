"""A BiEncoder on disk: the folder ``BiEncoder.save_pretrained`` writes and ``from_pretrained`` reads.

The folder is a sentence-transformers model, so other tools load it as is:
``SentenceTransformer(folder)``, and ``AutoModel.from_pretrained(folder)`` when the towers are
shared. Shared towers::

    config.json, model.safetensors, tokenizer files   the transformer, at the top level
    sentence_bert_config.json                         its max_seq_length (+ per-task lengths)
    modules.json                                      Transformer -> Pooling (-> Normalize)
    1_Pooling/config.json, 2_Normalize/               retrlab's pooling; L2 normalisation
    config_sentence_transformers.json                 the similarity function
    retrlab_biencoder.json                            retrlab's settings, and where its towers are
    README.md                                         the model card (``retrlab.model_card``)

Separate towers (DPR's two encoders) are one sentence-transformers ``Router`` module (version 5.0
on): ``query_0_Transformer/``, ``query_1_Pooling/``… for the "query" route, ``document_*`` for
the "document" route; ``encode_query`` / ``encode_document`` pick the route. The files are those
``SentenceTransformer.save`` and ``Router.save`` write (sentence-transformers'
``sentence_transformers/base/modules/router.py``), in the module names every version reads.
Folders saved before 2026-11-29 (``query/``, ``passage/``, ``retrlab_biencoder.json``) still load.

Saves are atomic: everything is written to a temporary folder next to the target, which replaces
the target only when complete, so a failed save leaves the previous one intact.
"""
from __future__ import annotations

import inspect
import json
import os
import shutil
import socket
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

import torch
from safetensors import SafetensorError, safe_open
from transformers import AutoConfig, AutoModel, AutoTokenizer

SETTINGS_FILE = "retrlab_biencoder.json"
SETTING_KEYS = ("pooling", "normalize", "shared", "query_max_length", "passage_max_length")
OLD_TOWERS = {"query": "query", "passage": "passage"}  # the layout saved before 2026-11-29
ROUTES = {"query": "query", "passage": "document"}  # retrlab's tower -> sentence-transformers' route
ST_TYPE = "sentence_transformers.models.{}"  # module names that sentence-transformers 2.x to 6.x resolve
ROUTER_HELP = ("saving separate query/passage towers needs sentence-transformers >= 5.0, whose Router "
               "module holds the two towers (pip install -U 'sentence-transformers>=5'); or train with "
               "shared towers (BiEncoder(..., shared=True))")


# --- writing --------------------------------------------------------------------------------------
def write_model_folder(model, folder: Path, card_text: str) -> Path:
    """Write ``model`` (a BiEncoder) and its card to ``folder``, atomically."""
    check_replaceable(folder)
    if not model.shared and not hasattr(st_modules(), "Router"):
        raise RuntimeError(f"cannot save to {folder}: {ROUTER_HELP}")
    with swapped_in(folder) as tmp:
        towers = write_shared(model, tmp) if model.shared else write_router(model, tmp)
        write_json(tmp / "config_sentence_transformers.json",
                   {"prompts": {}, "default_prompt_name": None,
                    "similarity_fn_name": "cosine" if model.normalize else "dot"})
        write_json(tmp / SETTINGS_FILE, {**model.settings(), "towers": towers})
        (tmp / "README.md").write_text(card_text, encoding="utf-8")
    return folder


def check_replaceable(folder: Path) -> None:
    """A save replaces the whole folder: refuse one that holds anything but a saved BiEncoder."""
    if folder.exists() and not folder.is_dir():
        raise FileExistsError(f"{folder} is a file, not a folder: choose another path for the model")
    if folder.is_dir() and any(folder.iterdir()) and not (folder / SETTINGS_FILE).exists():
        raise FileExistsError(f"{folder} holds files that are not a saved BiEncoder (no {SETTINGS_FILE}); "
                              f"save_pretrained replaces the whole folder, so choose a new or empty one")


@contextmanager
def swapped_in(folder: Path) -> Iterator[Path]:
    """Yield an empty folder next to ``folder`` that replaces it once the block completes.

    On an error the temporary folder is deleted and ``folder`` stays as it was; the old folder is
    moved aside before the new one takes its name, and deleted only after.
    """
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".saving"))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp's folder is private (0700); a saved model is an ordinary folder
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = tmp.with_suffix(".old")
    if folder.exists():
        os.replace(folder, old)
    os.replace(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)


def write_shared(model, folder: Path) -> dict:
    """One transformer at the top level (AutoModel reads it), then pooling and normalisation."""
    names = write_route(model, model.query_model, folder, prefix="", route="document")
    names[0] = ""  # sentence-transformers keeps its first module at the folder's top level
    entries = [{"idx": i, "name": str(i), "path": path, "type": ST_TYPE.format(kind)}
               for i, (path, kind) in enumerate(zip(names, module_kinds(model)))]
    write_json(folder / "modules.json", entries)
    return {"query": ".", "passage": "."}


def write_router(model, folder: Path) -> dict:
    """Two routes of modules, "query" and "document", inside one Router module."""
    structure = {route: write_route(model, getattr(model, f"{tower}_model"), folder, f"{route}_", route)
                 for tower, route in ROUTES.items()}
    types = {name: ST_TYPE.format(kind) for names in structure.values()
             for name, kind in zip(names, module_kinds(model))}
    write_json(folder / "router_config.json",
               {"types": types, "structure": structure,
                "parameters": {"default_route": "document", "allow_empty_key": True}})
    write_json(folder / "modules.json", [{"idx": 0, "name": "0", "path": "", "type": ST_TYPE.format("Router")}])
    return {tower: structure[route][0] for tower, route in ROUTES.items()}


def module_kinds(model) -> list[str]:
    return ["Transformer", "Pooling"] + (["Normalize"] if model.normalize else [])


def write_route(model, tower: torch.nn.Module, folder: Path, prefix: str, route: str) -> list[str]:
    """Write one route's modules into ``folder`` (``{prefix}{i}_{kind}`` subfolders); their names."""
    names = [f"{prefix}{i}_{kind}" for i, kind in enumerate(module_kinds(model))]
    write_transformer(model, tower, folder / names[0] if prefix else folder, route)
    write_json(folder / names[1] / "config.json", {
        "word_embedding_dimension": model.dim,
        "pooling_mode_cls_token": model.pooling == "cls",
        "pooling_mode_mean_tokens": model.pooling == "mean",
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
    })
    if model.normalize:
        (folder / names[2]).mkdir()  # Normalize has no settings
    return names


def write_transformer(model, tower: torch.nn.Module, folder: Path, route: str) -> None:
    """A sentence-transformers Transformer module: the Hugging Face model and tokenizer, and
    ``sentence_bert_config.json`` with the route's token limit."""
    tower.save_pretrained(folder)
    model.tokenizer.save_pretrained(folder)
    length = model.query_max_length if route == "query" else model.passage_max_length
    config = {"max_seq_length": length, "do_lower_case": False}
    if model.shared and "query_length" in st_transformer_parameters():
        config |= {"query_length": model.query_max_length, "document_length": model.passage_max_length}
    if getattr(tower, "pooler", True) is None and "add_pooling_layer" in inspect.signature(type(tower)).parameters:
        config["model_args"] = {"add_pooling_layer": False}  # no pooler saved: build none on load
    write_json(folder / "sentence_bert_config.json", config)


def st_modules():
    """``sentence_transformers.models`` (a deprecated alias of the module classes from 6.0 on)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import sentence_transformers.models as modules
    return modules


def st_transformer_parameters() -> set[str]:
    """The installed sentence-transformers' Transformer options (6.x truncates queries and documents
    at their own lengths, ``query_length`` / ``document_length``; older ones at ``max_seq_length``)."""
    return set(inspect.signature(st_modules().Transformer).parameters)


def write_json(path: Path, value) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")


# --- reading --------------------------------------------------------------------------------------
def read_settings(folder: Path) -> tuple[dict, dict]:
    """``retrlab_biencoder.json`` -> (BiEncoder settings, tower folders); errors name the file."""
    path = folder / SETTINGS_FILE
    try:
        settings = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON ({e}): the save is damaged; save the model again") from e
    if not isinstance(settings, dict):
        raise TypeError(f"{path} must hold a JSON object, got {type(settings).__name__}")
    unknown = sorted(set(settings) - {*SETTING_KEYS, "towers"})
    missing = [key for key in SETTING_KEYS if key not in settings]
    if unknown or missing:
        raise ValueError(f"{path}: unknown keys {unknown}, missing keys {missing}; "
                         f"a saved BiEncoder has {list(SETTING_KEYS)} (and 'towers')")
    towers = settings.pop("towers", OLD_TOWERS)
    if (not isinstance(towers, dict) or set(towers) != set(OLD_TOWERS)
            or not all(isinstance(v, str) and ".." not in Path(v).parts and not Path(v).is_absolute()
                       for v in towers.values())):
        raise ValueError(f"{path}: 'towers' must map 'query' and 'passage' to folders inside {folder}, "
                         f"got {towers!r}")
    return settings, towers


def tower_folders(folder: Path, shared: bool, towers: dict) -> list[Path]:
    """The query tower's folder, and the passage tower's when the towers are separate."""
    found = []
    for tower in ["query"] if shared else ["query", "passage"]:
        path = folder / towers[tower]
        if not (path / "config.json").is_file():
            kind = "shared towers" if shared else "separate query and passage towers"
            raise FileNotFoundError(f"{folder} holds a BiEncoder saved with {kind}, but its {tower} tower "
                                    f"{path} is missing (no config.json): the save is incomplete; save it again")
        found.append(path)
    return found


def load_transformer(folder: Path) -> torch.nn.Module:
    """A local Hugging Face model folder -> ``AutoModel``; a damaged file is named in the error."""
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder} is not a model folder: it has no config.json (nor the "
                                f"{SETTINGS_FILE} of BiEncoder.save_pretrained)")
    try:
        return AutoModel.from_pretrained(folder, **pooler_option(folder))
    except (OSError, ValueError, RuntimeError, SafetensorError) as e:
        raise ValueError(f"cannot load the model in {folder}: {str(e).splitlines()[0]}") from e


def pooler_option(folder: Path) -> dict:
    """``add_pooling_layer=False`` when the weights hold no pooler but the model class would build one
    (BERT's pooler is unused by retrieval: ``BiEncoder.tiny`` has none). Without it the pooler would
    be created with random weights and reported as missing on every load."""
    weights = folder / "model.safetensors"
    if not weights.is_file():
        return {}
    try:
        with safe_open(weights, framework="pt") as f:
            names = list(f.keys())
    except (SafetensorError, OSError) as e:
        raise ValueError(f"{weights} is not a readable safetensors file ({e}): the save is damaged; "
                         f"save the model again") from e
    if any(".pooler." in f".{name}" for name in names):
        return {}
    try:  # the class AutoModel would build for this config
        model_class = AutoModel._model_mapping[type(AutoConfig.from_pretrained(folder))]
    except KeyError:
        return {}
    return {"add_pooling_layer": False} if "add_pooling_layer" in inspect.signature(model_class).parameters else {}


# --- local folders and hub names ------------------------------------------------------------------
def local_folder(name_or_path: str | Path) -> Path | None:
    """The local folder ``name_or_path`` names, or None for a hub name (``org/model``).

    A local-looking path that does not exist is an error at once, never a hub request: a ``Path``,
    text starting with ``.``, ``/`` or ``~``, with a backslash or two slashes, not shaped like a hub
    name, or whose parent folder exists here.
    """
    text = str(name_or_path)
    path = Path(text).expanduser()
    if path.exists():
        return path
    if isinstance(name_or_path, Path) or not hub_shaped(text) or ("/" in text and path.parent.is_dir()):
        raise FileNotFoundError(f"model path {path} does not exist")
    return None


def hub_shaped(text: str) -> bool:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if text.startswith((".", "/", "~")) or "\\" in text or text.count("/") > 1:
        return False
    try:
        validate_repo_id(text)
    except HFValidationError:
        return False
    return True


def load_from_hub(name: str) -> tuple[torch.nn.Module, object]:
    """(model, tokenizer) of a hub name: from the local Hugging Face cache, else from the hub."""
    try:
        return (AutoModel.from_pretrained(name, local_files_only=True),
                AutoTokenizer.from_pretrained(name, local_files_only=True))
    except OSError:
        pass
    offline = offline_reason()
    if offline:  # asking the hub would only retry until it times out
        raise FileNotFoundError(f"model {name!r} not found: no such local folder, not in the Hugging Face "
                                f"cache, and this machine appears offline ({offline}), so the hub cannot "
                                f"provide it; pass the path of a local model folder")
    try:
        return AutoModel.from_pretrained(name), AutoTokenizer.from_pretrained(name)
    except OSError as e:
        raise FileNotFoundError(f"model {name!r} not found: no such local folder, and the Hugging Face hub "
                                f"could not provide it ({str(e).splitlines()[0]})") from e


def offline_reason() -> str | None:
    """Why the hub cannot be reached (offline mode set, or no connection), or None."""
    for variable in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(variable, "").upper() in ("1", "ON", "YES", "TRUE"):
            return f"{variable} is set"
    from huggingface_hub import constants

    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=3).close()
    except OSError as e:
        return f"{host} cannot be reached: {e}"
    return None
