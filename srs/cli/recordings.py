"""`srs recordings …`, `srs token …` and `srs audit …`: work on the data directory directly, daemon
running or not. What they read or change is audit-logged as ``cli:<user>``, like the API's requests."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from srs.cli.common import add_config_flags, cli_config
from srs.config import DEFAULT_DATA_DIR
from srs.errors import ExitCode, SrsError
from srs.service.audit import Action
from srs.service.filters import build_filter, split_extension
from srs.service.recordings import DEFAULT_LINK_VALIDITY_S, RecordingService
from srs.service.timefmt import iso_utc
from srs.service.tokens import SCOPES, TokenService
from srs.storage.datadir import require_data_dir
from srs.storage.index import RecordingIndex
from srs.storage.layout import PRIVATE_UMASK, DataLayout
from srs.storage.objects import ObjectStore
from srs.storage.records import State
from srs.storage.s3_store import S3Options, options_from_env
from srs.storage.stores import open_store

Handler = Callable[[argparse.Namespace], int]


@contextmanager
def _service(args: argparse.Namespace) -> Iterator[RecordingService]:
    """The data directory of ``--data-dir``/``SRS_DATA_DIR``/the config file, opened only when
    `srs serve` made it: a missing or mistyped directory is an error, never a new empty index.
    The object store is ``--objects``/``SRS_OBJECTS``/the config file's ``[storage] objects``."""
    config = cli_config(args)
    data_dir = require_data_dir(config.storage.data_dir, shared_index=bool(getattr(args, "index", None)
                                                                           or config.storage.index))
    objects: ObjectStore | None = None
    url = getattr(args, "objects", None) or os.environ.get("SRS_OBJECTS", "")
    if url:
        objects = open_store(url, options_from_env(S3Options(), os.environ))
    elif config.storage.objects:
        from srs.daemon.app import open_objects  # the daemon's own reading of [storage] objects

        objects = open_objects(config)
    previous = os.umask(PRIVATE_UMASK)  # what the CLI creates in the data dir is as private as the daemon's
    try:
        layout = DataLayout(data_dir)
        layout.ensure()
        shared = getattr(args, "index", None) or config.storage.index  # a fleet's PostgreSQL index
        index = RecordingIndex(shared or layout.index_path, layout=layout)
        try:
            service = RecordingService(
                index, layout, layout.secret(), max_link_validity_s=config.http.link_max_validity_min * 60,
                objects=objects,
            )
            yield service
        finally:
            index.close()
    finally:
        os.umask(previous)
        if objects is not None:
            objects.close()


def _errors_as_exit_status(handler: Handler) -> Handler:
    """Turn expected failures into one line on stderr and their exit status (1 unless the error
    names another, e.g. 3 for a data directory that is not one)."""

    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except SrsError as exc:
            print(f"srs: error: {getattr(exc, 'message', None) or exc}", file=sys.stderr)
            return int(getattr(exc, "exit_code", ExitCode.FAILURE))
        except OSError as exc:
            print(f"srs: error: {exc}", file=sys.stderr)
            return int(ExitCode.FAILURE)

    return run


def plural(count: int, noun: str) -> str:
    """``1 recording``, ``2 recordings``."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:
        return "cli"


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=False, ensure_ascii=False))


# ---- recordings ----------------------------------------------------------------------------------


def _filter_from_args(args: argparse.Namespace) -> Any:
    values = {
        "state": args.state, "start": args.start, "end": args.end,
        "call_recording_id": args.call_recording_id, "participant": args.participant,
        "sip_call_id": args.sip_call_id, "source": args.source,
        "min_duration": args.min_duration, "max_duration": args.max_duration,
        "node": getattr(args, "node", None),
    }
    pairs = [split_extension(item) for item in args.ext or []]
    return build_filter(values, pairs, oldest_first=getattr(args, "oldest_first", False))


def _summary_line(item: dict[str, Any]) -> str:
    duration = item["duration_ms"]
    seconds = f"{duration / 1000:.1f}s" if duration is not None else "-"
    who = ", ".join(p["aor"] or p["name"] or p["id"] for p in item["participants"]) or "-"
    flags = " incomplete" if item["incomplete"] else ""
    flags += " hold" if item["legal_hold"] else ""
    flags += f"  @{item['node']}" if item.get("node") else ""
    return (f"{item['id']}  {item['state']:<9}  {item['started_at'] or '-':<24}  {seconds:>8}  "
            f"{item['call_recording_id'] or '-'}  {who}{flags}")


@_errors_as_exit_status
def _list(args: argparse.Namespace) -> int:
    page_size = args.max
    page = args.page or 1
    if args.page is not None and page_size is None:
        page_size = 50
    with _service(args) as service:
        result = service.list(_filter_from_args(args), page=page, max=page_size)
    if args.json:
        if page_size is None:
            _print_json({"items": result["items"]})
        else:
            _print_json(result)
        return 0
    for item in result["items"]:
        print(_summary_line(item))
    pagination = result["pagination"]
    if page_size is not None:
        print(f"-- page {pagination['current']} of {pagination['pages']}, "
              f"{plural(pagination['total'], 'recording')} in all", file=sys.stderr)
    return 0


def _print_recording(item: dict[str, Any]) -> None:
    print(_summary_line(item))
    for key in ("sip_call_id", "source", "ended_at", "incomplete_reason"):
        if item.get(key) is not None:
            print(f"  {key}: {item[key]}")
    if item["file"]:
        file = item["file"]
        print(f"  file: {file['path']} ({file['size']} bytes, {file['sample_rate']} Hz,"
              f" sha256 {file['sha256']})")
    upload = item.get("upload")
    if upload:
        reason = f" ({upload['reason']})" if upload.get("reason") else ""
        print(f"  upload: {upload['state']}{reason}, {upload['attempts']} attempts, key {upload['key']}")
    for participant in item["participants"]:
        label = f"{participant['aor'] or '-'} {participant['name'] or ''}".rstrip()
        print(f"  participant {participant['id']}: {label}")
    for stream in item["streams"]:
        print(f"  stream {stream['label']}: {stream['codec'] or '-'} received={stream['packets_received']}"
              f" lost={stream['packets_lost']}")
    for key, value in item["extensions"].items():
        print(f"  extension {key}={value}")
    for warning in item["warnings"]:
        print(f"  warning: {warning}")


@_errors_as_exit_status
def _show(args: argparse.Namespace) -> int:
    if (args.id is None) == (args.call_recording_id is None):
        print("srs: error: give a recording ID or --call-recording-id (not both)", file=sys.stderr)
        return 2
    with _service(args) as service:
        if args.id is not None:
            item = service.show(args.id)
        else:
            item = service.show_by_call_recording_id(args.call_recording_id)
            same = build_filter({"call_recording_id": args.call_recording_id})
            total = service.list(same, page=1, max=1)["pagination"]["total"]
            if total > 1:
                print(f"srs: note: {plural(total, 'recording')} have call-recording-id "
                      f"{args.call_recording_id!r}; showing the newest (all of them: srs recordings list "
                      f"--call-recording-id {args.call_recording_id})", file=sys.stderr)
    if args.json:
        _print_json(item)
    else:
        _print_recording(item)
    return 0


@_errors_as_exit_status
def _download(args: argparse.Namespace) -> int:
    with _service(args) as service:
        source = service.stored_file(args.id)
        service.audit.record(_actor(), Action.DOWNLOAD, recording_id=args.id, detail={"to": args.output})
        if args.output == "-":
            for chunk in service.read(source):
                sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
        else:
            with open(args.output, "wb") as handle:
                for chunk in service.read(source):
                    handle.write(chunk)
            print(f"wrote {args.output} ({plural(source.size, 'byte')})", file=sys.stderr)
    return 0


@_errors_as_exit_status
def _link(args: argparse.Namespace) -> int:
    with _service(args) as service:
        if args.revoke:
            service.revoke_link(args.id, _actor())
            print(f"revoked link {args.id}", file=sys.stderr)
            return 0
        path, expires_at = service.sign_link(args.id, args.validity * 60, issuer=_actor())
    base = (args.base_url or "").rstrip("/")
    link = base + path
    if args.json:
        _print_json({"link": link, "expires_at": iso_utc(expires_at)})
    else:
        print(link)
        print(f"expires {iso_utc(expires_at)}", file=sys.stderr)
    return 0


@_errors_as_exit_status
def _export(args: argparse.Namespace) -> int:
    fmt = args.format or ("zip" if str(args.output).endswith(".zip") else "tar.gz")
    with _service(args) as service:
        if args.id:
            job = service.export(ids=list(args.id), fmt=fmt, actor=_actor())
        else:
            job = service.export(filt=_filter_from_args(args), fmt=fmt, actor=_actor())
        archive = service.export_file(job["id"])
        shutil.move(str(archive), args.output)
    print(f"wrote {args.output} ({plural(job['count'], 'recording')}, {plural(job['size'], 'byte')})",
          file=sys.stderr)
    return 0


@_errors_as_exit_status
def _delete(args: argparse.Namespace) -> int:
    with _service(args) as service:
        service.delete(args.id, actor=_actor())
    print(f"deleted {args.id}", file=sys.stderr)
    return 0


@_errors_as_exit_status
def _hold(args: argparse.Namespace) -> int:
    with _service(args) as service:
        item = service.hold(args.id, not args.off, actor=_actor())
    print(f"{item['id']} legal hold {'on' if item['legal_hold'] else 'off'}", file=sys.stderr)
    return 0


# ---- tokens --------------------------------------------------------------------------------------


@_errors_as_exit_status
def _token_create(args: argparse.Namespace) -> int:
    with _service(args) as service:
        token, record = TokenService(service.index).create(args.scope, args.name)
        service.audit.record(_actor(), Action.TOKEN_CREATE,
                             detail={"token_id": record["id"], "scope": record["scope"]})
    if args.json:
        _print_json({"token": token, "id": record["id"], "scope": record["scope"], "name": record["name"]})
    else:
        print(token)
        print(f"token {record['id']} (scope {record['scope']}) — shown once, store it now", file=sys.stderr)
    return 0


@_errors_as_exit_status
def _token_list(args: argparse.Namespace) -> int:
    with _service(args) as service:
        records = TokenService(service.index).list()
    items = [
        {**r, "created_at": iso_utc(r["created_at"]), "revoked_at": iso_utc(r["revoked_at"])} for r in records
    ]
    if args.json:
        _print_json({"items": items})
        return 0
    for item in items:
        status = f"revoked {item['revoked_at']}" if item["revoked_at"] else "active"
        line = f"{item['id']}  {item['scope']:<5}  {item['created_at']}  {status}  {item['name'] or ''}"
        print(line.rstrip())
    return 0


@_errors_as_exit_status
def _token_revoke(args: argparse.Namespace) -> int:
    with _service(args) as service:
        TokenService(service.index).revoke(args.id)
        service.audit.record(_actor(), Action.TOKEN_REVOKE, detail={"token_id": args.id})
    print(f"revoked {args.id}", file=sys.stderr)
    return 0


# ---- audit ---------------------------------------------------------------------------------------


@_errors_as_exit_status
def _audit_list(args: argparse.Namespace) -> int:
    values = {"since": args.since, "until": args.until, "token": args.token,
              "recording_id": args.recording_id, "export_id": args.export_id, "action": args.action}
    with _service(args) as service:
        result = service.audit.query(values, page=args.page, max=args.max)
    if args.json:
        _print_json(result)
        return 0
    for item in result["items"]:
        subject = item["recording_id"] or item["export_id"] or "-"
        print(f"{item['at']}  {item['action']:<16}  {subject}  {item['actor']}  {item['client'] or '-'}")
    return 0


# ---- wiring --------------------------------------------------------------------------------------


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    add_config_flags(common, data_dir_help=(
        f"data directory made by srs serve (default: $SRS_DATA_DIR, the config file's "
        f"[storage] data_dir, else {DEFAULT_DATA_DIR})"
    ))
    common.add_argument("--objects", metavar="URL", default=None,
                        help="object store of the daemon (default: $SRS_OBJECTS, the config file's"
                             " [storage] objects); S3 credentials from the AWS_* environment variables")
    common.add_argument("--index", default=os.environ.get("SRS_INDEX") or None, metavar="URL",
                        help="index URL, sqlite:///PATH or postgresql://... (default: $SRS_INDEX, the config"
                        " file's [storage] index, else the data directory's index.sqlite3)")
    return common


def _filters() -> argparse.ArgumentParser:
    filters = argparse.ArgumentParser(add_help=False)
    group = filters.add_argument_group("filters")
    group.add_argument("--state", choices=[s.value for s in State])
    group.add_argument("--start", metavar="TIME", help="started at or after (ISO 8601 or unix seconds)")
    group.add_argument("--end", metavar="TIME", help="started before (ISO 8601 or unix seconds)")
    group.add_argument("--call-recording-id", metavar="X")
    group.add_argument("--participant", metavar="TEXT", help="substring of a participant AOR or name")
    group.add_argument("--sip-call-id", metavar="ID")
    group.add_argument("--source", metavar="HOST:PORT", help="SBC address")
    group.add_argument("--node", metavar="ID", help="recorded by this srs node ([node] id)")
    group.add_argument("--min-duration", type=float, metavar="SECONDS")
    group.add_argument("--max-duration", type=float, metavar="SECONDS")
    group.add_argument("--ext", action="append", metavar="KEY=VALUE", help="metadata extension (repeatable)")
    return filters


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    common, filters = _common(), _filters()

    recordings = subparsers.add_parser("recordings", help="find, download, export and delete recordings")
    actions = recordings.add_subparsers(dest="recordings_command", required=True, metavar="COMMAND")

    listing = actions.add_parser("list", parents=[common, filters], help="list recordings, newest first")
    listing.add_argument("--oldest-first", action="store_true")
    listing.add_argument("--max", type=int, metavar="N", help="page size (default: every match)")
    listing.add_argument("--page", type=int, metavar="K", help="page number, from 1")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=_list)

    show = actions.add_parser("show", parents=[common], help="one recording")
    show.add_argument("id", nargs="?")
    show.add_argument("--call-recording-id", metavar="X",
                      help="the newest recording with this call-recording-id (a note on stderr says when "
                           "there are more)")
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=_show)

    download = actions.add_parser("download", parents=[common], help="copy the audio file")
    download.add_argument("id")
    download.add_argument("-o", "--output", required=True, metavar="FILE", help="target file, - for stdout")
    download.set_defaults(func=_download)

    link = actions.add_parser("link", parents=[common], help="a signed download link that needs no token")
    link.add_argument("id")
    link.add_argument("--validity", type=float, default=DEFAULT_LINK_VALIDITY_S / 60, metavar="MIN")
    link.add_argument("--base-url", metavar="URL", help="prefix, e.g. https://srs.example.net:8080")
    link.add_argument("--json", action="store_true")
    link.add_argument("--revoke", action="store_true", help="ID is a link id: revoke that link now")
    link.set_defaults(func=_link)

    export = actions.add_parser("export", parents=[common, filters], help="an archive of audio + index.json")
    export.add_argument("--id", action="append", metavar="ID", help="export these ids (repeatable)")
    export.add_argument("-o", "--output", required=True, metavar="FILE")
    export.add_argument("--format", choices=["tar.gz", "zip"], help="default: from the name, else tar.gz")
    export.set_defaults(func=_export)

    delete = actions.add_parser("delete", parents=[common], help="delete audio, metadata and index entry")
    delete.add_argument("id")
    delete.set_defaults(func=_delete)

    hold = actions.add_parser("hold", parents=[common], help="put on (or --off: release) legal hold")
    hold.add_argument("id")
    hold.add_argument("--off", action="store_true")
    hold.set_defaults(func=_hold)

    token = subparsers.add_parser("token", help="manage API bearer tokens")
    token_actions = token.add_subparsers(dest="token_command", required=True, metavar="COMMAND")
    create = token_actions.add_parser("create", parents=[common], help="create a token (printed once)")
    create.add_argument("--scope", choices=SCOPES, required=True)
    create.add_argument("--name", metavar="N")
    create.add_argument("--json", action="store_true")
    create.set_defaults(func=_token_create)
    listing_tokens = token_actions.add_parser("list", parents=[common], help="list tokens (never the secret)")
    listing_tokens.add_argument("--json", action="store_true")
    listing_tokens.set_defaults(func=_token_list)
    revoke = token_actions.add_parser("revoke", parents=[common], help="revoke a token by id")
    revoke.add_argument("id")
    revoke.set_defaults(func=_token_revoke)

    audit = subparsers.add_parser("audit", help="who read which recording, and every admin action")
    audit_actions = audit.add_subparsers(dest="audit_command", required=True, metavar="COMMAND")
    audit_list = audit_actions.add_parser("list", parents=[common], help="audit rows, newest first")
    audit_list.add_argument("--since", metavar="TIME", help="at or after (ISO 8601 or unix seconds)")
    audit_list.add_argument("--until", metavar="TIME", help="before (ISO 8601 or unix seconds)")
    audit_list.add_argument("--token", metavar="ID", help="token id")
    audit_list.add_argument("--recording-id", metavar="ID")
    audit_list.add_argument("--export-id", metavar="ID")
    audit_list.add_argument("--action", choices=[a.value for a in Action])
    audit_list.add_argument("--page", type=int, default=1, metavar="K")
    audit_list.add_argument("--max", type=int, default=100, metavar="N")
    audit_list.add_argument("--json", action="store_true")
    audit_list.set_defaults(func=_audit_list)
