"""`srs recordings list|show|download|link|export|delete|hold`: work on the data directory directly,
daemon running or not. What they read or change is audit-logged as ``cli:<user>``, like the API's
requests."""

from __future__ import annotations

import argparse
import shutil
import sys
from typing import Any, TypeAlias

from srs.cli.datadir import common_parser, open_service
from srs.cli.output import actor, errors_as_exit_status, plural, print_json
from srs.service.audit import Action
from srs.service.filters import build_filter, split_extension
from srs.service.links import DEFAULT_LINK_VALIDITY_S
from srs.service.timefmt import iso_utc
from srs.storage.records import RecordingFilter, State

SubParsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def _filter_from_args(args: argparse.Namespace) -> RecordingFilter:
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


@errors_as_exit_status
def _list(args: argparse.Namespace) -> int:
    page_size = args.max
    page = args.page or 1
    if args.page is not None and page_size is None:
        page_size = 50
    with open_service(args) as service:
        result = service.catalog.list(_filter_from_args(args), page=page, max=page_size)
    if args.json:
        print_json({"items": result["items"]} if page_size is None else result)
        return 0
    for item in result["items"]:
        print(_summary_line(item))
    pagination = result["pagination"]
    if page_size is not None:
        print(f"-- page {pagination['current']} of {pagination['pages']}, "
              f"{plural(pagination['total'], 'recording')} in all", file=sys.stderr)
    return 0


@errors_as_exit_status
def _show(args: argparse.Namespace) -> int:
    if (args.id is None) == (args.call_recording_id is None):
        print("srs: error: give a recording ID or --call-recording-id (not both)", file=sys.stderr)
        return 2
    with open_service(args) as service:
        catalog = service.catalog
        if args.id is not None:
            item = catalog.show(args.id)
        else:
            crid = args.call_recording_id
            item = catalog.show_by_call_recording_id(crid)
            same = build_filter({"call_recording_id": crid})
            total = catalog.list(same, page=1, max=1)["pagination"]["total"]
            if total > 1:
                print(f"srs: note: {plural(total, 'recording')} have call-recording-id {crid!r}; showing "
                      f"the newest (all of them: srs recordings list --call-recording-id {crid})",
                      file=sys.stderr)
    if args.json:
        print_json(item)
    else:
        _print_recording(item)
    return 0


@errors_as_exit_status
def _download(args: argparse.Namespace) -> int:
    with open_service(args) as service:
        files = service.files
        source = files.stored_file(args.id)
        service.audit.record(actor(), Action.DOWNLOAD, recording_id=args.id, detail={"to": args.output})
        if args.output == "-":
            for chunk in files.read(source):
                sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
        else:
            with open(args.output, "wb") as handle:
                for chunk in files.read(source):
                    handle.write(chunk)
            print(f"wrote {args.output} ({plural(source.size, 'byte')})", file=sys.stderr)
    return 0


@errors_as_exit_status
def _link(args: argparse.Namespace) -> int:
    with open_service(args) as service:
        if args.revoke:
            service.links.revoke_link(args.id, actor())
            print(f"revoked link {args.id}", file=sys.stderr)
            return 0
        path, expires_at = service.links.sign_link(args.id, args.validity * 60, issuer=actor())
    link = (args.base_url or "").rstrip("/") + path
    if args.json:
        print_json({"link": link, "expires_at": iso_utc(expires_at)})
    else:
        print(link)
        print(f"expires {iso_utc(expires_at)}", file=sys.stderr)
    return 0


@errors_as_exit_status
def _export(args: argparse.Namespace) -> int:
    fmt = args.format or ("zip" if str(args.output).endswith(".zip") else "tar.gz")
    with open_service(args) as service:
        jobs = service.exports
        if args.id:
            job = jobs.export(ids=list(args.id), fmt=fmt, actor=actor())
        else:
            job = jobs.export(filt=_filter_from_args(args), fmt=fmt, actor=actor())
        shutil.move(str(jobs.export_file(job["id"])), args.output)
    print(f"wrote {args.output} ({plural(job['count'], 'recording')}, {plural(job['size'], 'byte')})",
          file=sys.stderr)
    return 0


@errors_as_exit_status
def _delete(args: argparse.Namespace) -> int:
    with open_service(args) as service:
        service.lifecycle.delete(args.id, actor=actor())
    print(f"deleted {args.id}", file=sys.stderr)
    return 0


@errors_as_exit_status
def _hold(args: argparse.Namespace) -> int:
    with open_service(args) as service:
        item = service.lifecycle.hold(args.id, not args.off, actor=actor())
    print(f"{item['id']} legal hold {'on' if item['legal_hold'] else 'off'}", file=sys.stderr)
    return 0


# ---- wiring --------------------------------------------------------------------------------------


def filters_parser() -> argparse.ArgumentParser:
    """The filter flags of `list` and `export`, the same keys as the API's list query."""
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


def _add_reads(
    actions: SubParsers, common: argparse.ArgumentParser, filters: argparse.ArgumentParser
) -> None:
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


def _add_changes(
    actions: SubParsers, common: argparse.ArgumentParser, filters: argparse.ArgumentParser
) -> None:
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


def register(subparsers: SubParsers, common: argparse.ArgumentParser | None = None) -> None:
    common = common if common is not None else common_parser()
    filters = filters_parser()
    recordings = subparsers.add_parser("recordings", help="find, download, export and delete recordings")
    actions = recordings.add_subparsers(dest="recordings_command", required=True, metavar="COMMAND")
    _add_reads(actions, common, filters)
    _add_changes(actions, common, filters)
