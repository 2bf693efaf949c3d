"""`srs audit list`: who read which recording, and every admin action, newest first."""

from __future__ import annotations

import argparse

from srs.cli.datadir import common_parser, open_service
from srs.cli.output import errors_as_exit_status, print_json
from srs.service.audit import Action


@errors_as_exit_status
def _list(args: argparse.Namespace) -> int:
    values = {"since": args.since, "until": args.until, "token": args.token,
              "recording_id": args.recording_id, "export_id": args.export_id, "action": args.action}
    with open_service(args) as service:
        result = service.audit.query(values, page=args.page, max=args.max)
    if args.json:
        print_json(result)
        return 0
    for item in result["items"]:
        subject = item["recording_id"] or item["export_id"] or "-"
        print(f"{item['at']}  {item['action']:<16}  {subject}  {item['actor']}  {item['client'] or '-'}")
    return 0


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser | None = None,
) -> None:
    common = common if common is not None else common_parser()
    audit = subparsers.add_parser("audit", help="who read which recording, and every admin action")
    actions = audit.add_subparsers(dest="audit_command", required=True, metavar="COMMAND")
    listing = actions.add_parser("list", parents=[common], help="audit rows, newest first")
    listing.add_argument("--since", metavar="TIME", help="at or after (ISO 8601 or unix seconds)")
    listing.add_argument("--until", metavar="TIME", help="before (ISO 8601 or unix seconds)")
    listing.add_argument("--token", metavar="ID", help="token id")
    listing.add_argument("--recording-id", metavar="ID")
    listing.add_argument("--export-id", metavar="ID")
    listing.add_argument("--action", choices=[a.value for a in Action])
    listing.add_argument("--page", type=int, default=1, metavar="K")
    listing.add_argument("--max", type=int, default=100, metavar="N")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=_list)
