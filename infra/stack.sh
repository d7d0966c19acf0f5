#!/bin/sh
# Prints which stack `make setup|up|down|status|demo|test` use on this host: `native` or `compose`.
#   native   a .venv on the host, native Kafka (jars via Maven) and PostgreSQL (apt) started by `mdpipe infra`
#            (`make up` still prefers infra/compose.yaml for the broker and database when a Docker engine answers)
#   compose  everything in containers from infra/compose.yaml and the Dockerfile, nothing installed on the host:
#            a Docker engine answers (`docker info`) and this host cannot run the native launchers (not Linux, or
#            no apt-get and not all of java, mvn and PostgreSQL's server binaries), e.g. a Mac with Docker Desktop
# `make STACK=native ...` / `make STACK=compose ...` overrides the choice.
set -u

native_possible() {
	[ "$(uname -s)" = Linux ] || return 1
	command -v apt-get >/dev/null 2>&1 && return 0  # installs whatever is missing
	command -v java >/dev/null 2>&1 || return 1
	command -v mvn >/dev/null 2>&1 || return 1
	if [ -n "${MDPIPE_PG_BIN:-}" ]; then
		[ -x "$MDPIPE_PG_BIN/postgres" ]
		return
	fi
	for bin in /usr/lib/postgresql/*/bin/postgres; do
		[ -x "$bin" ] && return 0
	done
	return 1
}

if docker info >/dev/null 2>&1 && ! native_possible; then
	echo compose
else
	echo native
fi
