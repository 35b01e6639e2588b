"""Which witnesses exist: the registry of adapter kinds by name, and the settings'
``witnesses`` list checked and turned into adapters.

A kind is a factory ``(name, its settings entry, WitnessContext) -> Witness``.  The
built-in kinds are ``s3`` (:mod:`retention.witness_adapters`) and ``https``
(:mod:`retention.witness_https`); :func:`register_kind` adds another (e.g. a regional
platform's own API) before the runtime starts.  Secrets are never written in an entry:
they are named by file (``*_file``), read when the adapters are built.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from labwitness.errors import ConfigError
from retention.witness_adapters import NAME, Witness, WitnessContext, s3_witness
from retention.witness_https import https_witness

WitnessFactory = Callable[[str, Mapping[str, Any], WitnessContext], Witness]

#: kind -> (factory, keys its entry must have)
KINDS: dict[str, tuple[WitnessFactory, tuple[str, ...]]] = {
    "s3": (s3_witness, ("endpoint", "bucket", "access_key_file", "secret_key_file")),
    "https": (https_witness, ("url",)),
}
#: entry keys that would hold a secret inline (refused: secrets come from files)
SECRET_SUFFIXES = ("_key", "key", "token", "password", "secret")


def register_kind(kind: str, factory: WitnessFactory, required: tuple[str, ...] = ()) -> None:
    """Make ``kind`` configurable as ``{kind = "<kind>", name = "...", ...}`` in ``witnesses``."""
    KINDS[kind] = (factory, tuple(required))


def check_specs(specs: list[Mapping[str, Any]]) -> list[str]:
    """The configured witnesses' names; a malformed entry is a :class:`ConfigError` naming it."""
    names: list[str] = []
    for i, spec in enumerate(specs):
        where = f"witnesses[{i}]"
        if not isinstance(spec, Mapping):
            raise ConfigError(f"见证配置无效 / {where}: expected a table like {{kind = \"s3\", ...}}")
        kind = spec.get("kind")
        if kind not in KINDS:
            raise ConfigError(f"见证类型未知 / {where}: kind {kind!r} is not one of {sorted(KINDS)}")
        name = str(spec.get("name") or kind)
        if not NAME.fullmatch(name):
            raise ConfigError(f"见证名称无效 / {where}: name {name!r}: lower-case letters, digits, _ and - (at most 64)")
        if name in names:
            raise ConfigError(f"见证名称重复 / {where}: two witnesses are named {name!r}; give each its own name")
        missing = [k for k in KINDS[kind][1] if spec.get(k) in (None, "")]
        if missing:
            raise ConfigError(f"见证配置缺少字段 / {where} ({name}): missing {', '.join(missing)}")
        inline = [k for k in spec if k.lower().endswith(SECRET_SUFFIXES)]
        if inline:
            raise ConfigError(f"见证密钥须以文件给出 / {where} ({name}): {', '.join(inline)}: secrets are given as file "
                              f"paths ({inline[0]}_file = \"/path\", readable by the service alone), never inline")
        names.append(name)
    return names


def build_witnesses(specs: list[Mapping[str, Any]], ctx: WitnessContext) -> list[Witness]:
    """One adapter per entry, in the configured order (reads their secret files; contacts nobody)."""
    names = check_specs(specs)
    return [KINDS[spec["kind"]][0](name, spec, ctx) for name, spec in zip(names, specs)]
