"""Set up (or bring up to date) Superset's metadata DB in one process: migrations, roles and
permissions, and the ``admin`` user with the password read from stdin (never on a command line).

The equivalent CLI (`superset db upgrade`, `superset fab create-admin`, `superset init`) loads the
app three times, about 15 s each on 2 cores; this loads it once. Idempotent: an existing admin only
gets its password reset. Run with ``.venv-superset/bin/python`` and SUPERSET_CONFIG_PATH set.
"""

from __future__ import annotations

import sys


def main() -> int:
    password = sys.stdin.readline().strip()
    if not password:
        raise ValueError("stdin: expected the admin password on the first line")
    from superset.app import create_app

    app = create_app()
    with app.app_context():
        from flask_migrate import upgrade
        from superset import appbuilder, db, security_manager

        upgrade()
        appbuilder.add_permissions(update_perms=True)
        security_manager.sync_role_definitions()
        admin = security_manager.find_user(username="admin")
        if admin is None:
            created = security_manager.add_user("admin", "trialsynth", "admin", "admin@trialsynth.invalid",
                                                security_manager.find_role("Admin"), password=password)
            if not created:
                raise RuntimeError("could not create the Superset admin user")
        else:
            security_manager.reset_password(admin.id, password)
        db.session.commit()
    print("Superset metadata DB ready (migrations, roles, admin user)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
