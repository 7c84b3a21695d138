"""`tram clients`: print (or write) the set-up of Codex, Claude Code, Qwen Code, opencode and
Open WebUI for this gateway."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tram.clients.setups import CLIENTS, ClientSetup, SetupFile, build_setups
from tram.clients.target import DEFAULT_KEY_ENV, Target, resolve_target
from tram.clients.texts import LANGUAGES, default_lang, say
from tram.config import load_settings

__all__ = ["add_clients_parser", "home_file", "render", "write_setups"]


def home_file(setup: ClientSetup, file: SetupFile, environ: Mapping[str, str]) -> Path | None:
    """Where the client reads `file` by default, honouring its own relocation variable
    (CODEX_HOME, CLAUDE_CONFIG_DIR, QWEN_HOME, OPENCODE_CONFIG) when it is set."""
    for variable, folder_part in setup.folder_env.items():
        if environ.get(variable):
            base = Path(environ[variable]).expanduser()
            if file.folder_path == folder_part:
                return base
            return base / Path(file.folder_path).relative_to(folder_part)
    return Path(file.home_path).expanduser() if file.home_path else None


def render(target: Target, setups: list[ClientSetup], lang: str,
           folder: Path | None = None) -> str:
    window = say(lang, "window", window=f"{target.context_window:,}") if target.context_window \
        else say(lang, "no_window")
    out = [say(lang, "title", url=target.v1, model=target.model, window=window),
           say(lang, "source", source=target.source),
           say(lang, "key", var=target.key_env, model=target.model), ""]
    for setup in setups:
        out += [f"## {setup.title}", ""]
        for file in setup.files:
            if folder is not None:
                where = folder / file.folder_path
                env = " ".join(f"{k}={folder / v}" for k, v in setup.folder_env.items())
                head = say(lang, "file_folder", path=where, env=env) if env else \
                    say(lang, "file_only", path=where)
            else:
                head = say(lang, "file_home", path=file.home_path or file.folder_path)
            out += [head, "", *("    " + line for line in file.content.splitlines()), ""]
        out += [f"- {note}" for note in setup.notes]
        out += [say(lang, "try", command=setup.try_command), ""]
    return "\n".join(out)


def _write_one(path: Path, content: str, force: bool, lang: str) -> str:
    if path.is_file():
        if path.read_text(encoding="utf-8") == content:
            return say(lang, "same", path=path)
        backup = path.with_name(path.name + ".bak")
        if not force:
            return say(lang, "kept", path=path, backup=backup)
        shutil.copy2(path, backup)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content, encoding="utf-8")
    return say(lang, "wrote", path=path)


def write_setups(setups: list[ClientSetup], lang: str, folder: Path | None, force: bool,
                 environ: Mapping[str, str] | None = None) -> list[str]:
    """Write each set-up's files (to `folder`, else where each client reads them); a file
    that exists with other content is kept unless `force` (then it is kept as FILE.bak)."""
    env = os.environ if environ is None else environ
    done = []
    for setup in setups:
        for file in setup.files:
            path = folder / file.folder_path if folder is not None else home_file(setup, file, env)
            if path is not None:
                done.append(_write_one(path, file.content, force, lang))
    return done


def _clients(args: argparse.Namespace) -> int:
    lang = args.lang or default_lang()
    names = tuple(args.client or CLIENTS)
    settings = load_settings(config_path=args.config)
    target = resolve_target(settings, url=args.url, model=args.model,
                            context_window=args.context, key_env=args.key_env)
    setups = build_setups(target, lang, names)
    folder = Path(args.write).resolve() if args.write else None
    print(render(target, setups, lang, folder))
    if args.write is not None:
        for line in write_setups(setups, lang, folder, args.force):
            print(f"tram: {line}", file=sys.stderr)
    return 0


def add_clients_parser(verbs: Any) -> None:
    clients = verbs.add_parser(
        "clients", help="set up Codex, Claude Code, Qwen Code, opencode, Open WebUI for Trạm",
        description="Print a working set-up of each coding agent and chat UI for this gateway "
                    "(URL, key variable, model, context window: asked from the gateway's "
                    "/v1/models when it answers, else read from the config), or write it with "
                    "--write. No key is ever written: each client reads it from $TRAM_API_KEY.")
    clients.add_argument("--client", action="append", choices=CLIENTS,
                         help="only this client (repeatable; default: all)")
    clients.add_argument("--url", help="the gateway's URL as the clients reach it "
                                       "(default: from the config, http://127.0.0.1:4000)")
    clients.add_argument("--model", help="the model alias (default: qwen-text, else the first)")
    clients.add_argument("--context", type=int, metavar="TOKENS",
                         help="the model's context window (default: the gateway's or the config's)")
    clients.add_argument("--key-env", default=DEFAULT_KEY_ENV, metavar="VAR",
                         help=f"the environment variable holding the key (default {DEFAULT_KEY_ENV})")
    clients.add_argument("--lang", choices=LANGUAGES, help="vi or en (default: from LANG)")
    clients.add_argument("--write", nargs="?", const="", metavar="DIR",
                         help="write the files: into DIR (one folder per client), or with no DIR "
                              "where each client reads them (~/.codex/config.toml, "
                              "~/.claude/settings.json, ~/.qwen/settings.json, "
                              "~/.config/opencode/opencode.json)")
    clients.add_argument("--force", action="store_true",
                         help="replace files that exist with other content (kept as FILE.bak)")
    clients.add_argument("--config", type=Path, help="tram.yaml (default: $TRAM_CONFIG or "
                                                     "./tram.yaml; else the embedded profile)")
    clients.set_defaults(run=_clients)
