"""``trialsynth keys status|check|rotate|rewrap|destroy``: the tenants' encryption keys (docs/security.md)."""

from __future__ import annotations

import argparse

from trialsynth.names import validate_name


def _service():  # imported lazily: other commands never pay for cryptography / boto3
    from trialsynth.security import KeyService

    return KeyService()


def _status(args: argparse.Namespace) -> int:
    service = _service()
    statuses = service.status(validate_name(args.tenant, "tenant") if args.tenant else None)
    print(f"key store: {service.kms.describe()}")
    if not statuses:
        print("no tenant has a key yet")
    for st in statuses:
        print(f"tenant {st.tenant}: current {st.current or 'none'}")
        for v in st.versions:
            when = f", destroyed {v.destroyed_at}" if v.state == "destroyed" and v.destroyed_at else ""
            print(f"  {v.key_id}  {v.state}{when}  objects: {st.objects.get(v.key_id, 0)}")
        unknown = {k: n for k, n in st.objects.items() if k not in {v.key_id for v in st.versions}}
        for key_id, n in sorted(unknown.items()):
            print(f"  {key_id}  unknown to the key store  objects: {n}")
        for path in st.unreadable_headers:
            print(f"  CORRUPT HEADER {path}: not readable as an encrypted object; restore it from backup")
    return 0


def _check(args: argparse.Namespace) -> int:
    from trialsynth.security import check_keys

    checked = check_keys()
    print(f"keys ok: {', '.join(map(str, checked)) or 'none configured and no canaries in this data dir'}")
    return 0


def _rotate(args: argparse.Namespace) -> int:
    key_id = _service().rotate(validate_name(args.tenant, "tenant"))
    print(f"created {key_id}; new writes of {args.tenant} use it. Old objects stay readable; run "
          f"`trialsynth keys rewrap --tenant {args.tenant}` to move them to {key_id}")
    return 0


def _rewrap(args: argparse.Namespace) -> int:
    report = _service().rewrap(validate_name(args.tenant, "tenant"))
    print(f"rewrapped {len(report.rewrapped)} objects to {report.key_id} "
          f"({report.already_current} already on it; object bodies unchanged)")
    for path, why in report.failed:
        print(f"FAILED {path}: {why}")
    return 1 if report.failed else 0


def _destroy(args: argparse.Namespace) -> int:
    tenant = validate_name(args.tenant, "tenant")
    what = f"versions <= v{args.version}" if args.version else "EVERY version"
    if not args.yes:
        print(f"refusing to destroy {what} of {tenant}'s key without --yes: objects encrypted with them become "
              "unreadable for ever (crypto-shredding)")
        return 2
    destroyed, lost = _service().destroy(tenant, args.version)
    if not destroyed:
        print(f"nothing to destroy: {tenant} has no active key {what}")
        return 0
    print(f"destroyed {', '.join(map(str, destroyed))}; {lost} encrypted objects of {tenant} are now unreadable "
          "(their ciphertext is kept)")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("keys", help="tenant encryption keys: status, check, rotate, rewrap, destroy")
    actions = parser.add_subparsers(dest="action", required=True)

    p = actions.add_parser("status", help="key versions per tenant and how many objects each protects")
    p.add_argument("--tenant", help="only this tenant")
    p.set_defaults(func=_status)

    p = actions.add_parser("check", help="the startup check: every configured key exists and opens its canary")
    p.set_defaults(func=_check)

    p = actions.add_parser("rotate", help="create version n+1 of a tenant's key (v1 for a new tenant)")
    p.add_argument("--tenant", required=True)
    p.set_defaults(func=_rotate)

    p = actions.add_parser("rewrap", help="re-wrap every data key of a tenant to its newest version")
    p.add_argument("--tenant", required=True)
    p.set_defaults(func=_rewrap)

    p = actions.add_parser("destroy", help="crypto-shred: destroy a tenant's key versions")
    p.add_argument("--tenant", required=True)
    p.add_argument("--version", type=int, help="destroy versions up to and including this one (default: all)")
    p.add_argument("--yes", action="store_true", help="confirm: the objects become unreadable for ever")
    p.set_defaults(func=_destroy)
