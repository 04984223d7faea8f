# postgres-apps verification probe, pod runner (POSIX sh + psql; busybox or coreutils).
#
# Measures only; prints ONE JSON probe report per app (schema postgres-apps.verification.report/v3,
# the same shape the direct runner builds) as the last output line of that app, then exits 0.
# The judgement (pass/fail, messages, hints) is made by
# components/postgres_apps/verification/judgement.py.
# It carries no SQL of its own: every statement arrives in a PROBE_*_SQL variable, built by
# statements.py (statements.probe_env), the same texts the direct runner sends.
#
# Input (environment):
#   DB_HOST DB_PORT DB_NAME DB_USER DB_PASSWORD DB_URI   from the app's Secret (host, port,
#                                                        dbname, user, password, uri)
#   DB_CONN_KEYS, DB_CONN_<k> the Secret keys marked as connection strings (names), and the k-th
#                            one's value from the Secret: each is logged in with as given
#   PROBE_APP                app name (for the report)
#   PROBE_SSLMODE            sslmode for the individual-keys connections (default prefer)
#   PROBE_LOGIN_SQL          who/where/which server after the login (one row)
#   PROBE_PRIVILEGES_SQL     the role's attributes (one row of t/f)
#   PROBE_ISOLATION_SQL      the isolation statement, complete (the peers and the allow-list are
#                            in it). Its row: the database the ONE refused login goes to, and the
#                            facts as JSON (copied into the report as they are).
#   PROBE_CRUD_TABLE         the scratch table's name (for the report)
#   PROBE_CRUD_{CREATE,INSERT,SELECT,UPDATE,DELETE,DROP}_SQL   the scratch-table round
#   PROBE_CRUD_CLEANUP_SQL   drops the scratch table after a failed step
#   PROBE_PING_SQL           the timed round trip; also what the refused login sends
#   PROBE_URI_SQL            sent over DB_URI (current user and database)
#   PROBE_ROUNDTRIPS         number of SELECT 1 round trips timed (default 20)
#   PROBE_CONNECT_TIMEOUT    seconds (default 10)
#   PROBE_DNS_HOST           name for the dns check (default DB_HOST)
#   PROBE_APPS               a probe pod: the number of apps it checks; each app's variables are
#   PROBE_APP_VARS           then P<i>_<NAME> for these NAMEs, and probe_app runs once per app
#   PROBE_SECRET_VARS        (see the end of this file); these NAMEs come from the Secret
#   PROBE_LANES              how many apps probe at once (default 1)
# The password is never printed: URI error messages have their quoted fragments redacted.
# Errors: psql runs with VERBOSITY=verbose, so a failed statement's SQLSTATE is printed; it goes
# into the report's "sqlstate" and the text is reported as the default verbosity prints it.

set -u
export LC_ALL=C
unset PGSERVICE PGSERVICEFILE PGPASSFILE 2>/dev/null || true

# ---- helpers ---------------------------------------------------------------------------------

# one line, whitespace collapsed, "psql: error: " dropped (same as direct.error_text)
oneline() {
	printf '%s' "$1" | tr '\n\t\r' '   ' | tr -d '\001-\037' \
		| sed -e 's/^psql: error: //' -e 's/^psql:[^ ]*: //' -e 's/  */ /g' -e 's/^ //' -e 's/ $//'
}

# JSON string literal of $1 (control characters become spaces or go). Text without a quote, a
# backslash or a control character is printed as it is, without the pipeline's three processes:
# most strings of a report are such, and a probe pod runs the script for every app.
js() {
	case $1 in
		*[\"\\]* | *[[:cntrl:]]*)
			printf '"%s"' "$(printf '%s' "$1" | tr '\n\t\r' '   ' | tr -d '\001-\037' \
				| sed -e 's/\\/\\\\/g' -e 's/"/\\"/g')"
			;;
		*) printf '"%s"' "$1" ;;
	esac
}

# JSON string literal of $1, or null when empty
jsn() {
	if [ -n "$1" ]; then js "$1"; else printf 'null'; fi
}

# JSON number when $1 is all digits, else a string
jnum() {
	case $1 in
		'' | *[!0-9]*) jsn "$1" ;;
		*) printf '%s' "$1" ;;
	esac
}

# space-separated names → JSON array of strings
jlist() {
	l=''
	for n in $1; do
		l="$l${l:+,}$(js "$n")"
	done
	printf '[%s]' "$l"
}

# psql boolean (t/f) → JSON
jbool() {
	case $1 in
		t) printf 'true' ;;
		f) printf 'false' ;;
		*) printf 'null' ;;
	esac
}

# microseconds from some fixed origin: date +%s%N (GNU, busybox with nanoseconds) or /proc/uptime
clock='uptime'
case $(date +%s%N 2>/dev/null) in
	'' | *[!0-9]*) ;;
	??????????????????*) clock='date' ;;
esac
if [ "$clock" = "date" ]; then
	clock_cmd='date +%s%N'
else
	clock_cmd="cut -d' ' -f1 /proc/uptime"
fi
# a clock reading (date: ns since the epoch; uptime: seconds with 2 decimals) → microseconds
to_us() {
	if [ "$clock" = "date" ]; then
		echo $(($1 / 1000))
	else
		t=$(printf '%s' "$1" | tr -d .)
		echo $((t * 10000))
	fi
}
ms_between() {
	d=$(($2 - $1))
	printf '%d.%03d' $((d / 1000)) $((d % 1000))
}

# Quoted fragments of libpq's URI errors can be pieces of a mis-encoded password: redact all of
# them except the user, database, host, port and option names.
redact_quoted() {
	rest=$1
	res=''
	while :; do
		case $rest in
			*\"*\"*)
				pre=${rest%%\"*}
				rest=${rest#*\"}
				tok=${rest%%\"*}
				rest=${rest#*\"}
				case $tok in
					"${DB_USER:-}" | "${DB_NAME:-}" | "${DB_HOST:-}" | "${DB_PORT:-}") ;;
					host | port | dbname | user | sslmode | connect_timeout) ;;
					*) tok='<redacted>' ;;
				esac
				res="$res$pre\"$tok\""
				;;
			*)
				res="$res$rest"
				break
				;;
		esac
	done
	printf '%s' "$res"
}

pq() {
	psql -X -w -q -A -t -v VERBOSITY=verbose "$@"
}

# psql's error output (VERBOSITY=verbose) → the first SQLSTATE in it, or nothing
sqlstate_of() {
	printf '%s\n' "$1" | sed -n 's/.*[A-Z]:  \([0-9A-Z]\{5\}\): .*/\1/p' | head -n 1
}

# …and the same output as the default verbosity prints it (no SQLSTATE, no LOCATION line)
plain_err() {
	printf '%s\n' "$1" | sed -e 's/\([A-Z]:  \)[0-9A-Z]\{5\}: /\1/' -e '/^LOCATION:  /d'
}

# psql's error output → `"error":…,"sqlstate":…` (the error on one line)
err_fields() {
	printf '"error":%s,"sqlstate":%s' "$(js "$(oneline "$(plain_err "$1")")")" "$(jsn "$(sqlstate_of "$1")")"
}

# one connection string (the uri, a key marked as a connection string) → its report entry: log in
# with it exactly as given (every other PG* variable unset, so nothing from the individual keys
# may leak in) and say as whom and where, or the error (quoted fragments redacted: they can be
# pieces of a mis-encoded password). Empty: the Secret does not have it.
as_given() {
	if [ -z "$1" ]; then
		printf '%s' '{"given":false,"source":"secret","ok":false,"error":null}'
	elif ag_out=$(
		unset PGHOST PGPORT PGDATABASE PGUSER PGPASSWORD PGSSLMODE
		pq -F '|' -d "$1" -c "${PROBE_URI_SQL:-}" 2>&1
	); then
		printf '{"given":true,"source":"secret","ok":true,"error":null,"current_user":%s,"database":%s}' \
			"$(jsn "${ag_out%%|*}")" "$(jsn "${ag_out#*|}")"
	else
		printf '{"given":true,"source":"secret","ok":false,"error":%s,"sqlstate":%s}' \
			"$(js "$(redact_quoted "$(oneline "$(plain_err "$ag_out")")")")" "$(jsn "$(sqlstate_of "$ag_out")")"
	fi
}

# an IPv4 or IPv6 literal (nothing to resolve)
is_ip() {
	case $1 in
		*:*) return 0 ;;
		'' | *[!0-9.]*) return 1 ;;
		*) return 0 ;;
	esac
}


# ---- one app's probe: the Secret's keys in DB_*, the statements in PROBE_* ---------------

probe_app() {
	export PGHOST="${DB_HOST:-}"
	export PGPORT="${DB_PORT:-}"
	export PGDATABASE="${DB_NAME:-}"
	export PGUSER="${DB_USER:-}"
	export PGPASSWORD="${DB_PASSWORD:-}"
	export PGSSLMODE="${PROBE_SSLMODE:-prefer}"
	export PGCONNECT_TIMEOUT="${PROBE_CONNECT_TIMEOUT:-10}"
	export PGAPPNAME=postgres-apps-verify
	# no statement of the probe may hang (the pod also has activeDeadlineSeconds)
	export PGOPTIONS="-c statement_timeout=$((${PROBE_CONNECT_TIMEOUT:-10} * 1000))"
	roundtrips="${PROBE_ROUNDTRIPS:-20}"

	tmp=$(mktemp -d 2>/dev/null) || { tmp="${TMPDIR:-/tmp}/probe.$$"; mkdir -p "$tmp"; }
	trap 'rm -rf "$tmp"' EXIT

	# ---- dns -------------------------------------------------------------------------------------
	dns_host="${PROBE_DNS_HOST:-${DB_HOST:-}}"
	dns_addrs=''
	dns_err=''
	if [ -z "$dns_host" ]; then
		dns_err='no host in the Secret'
	elif is_ip "$dns_host"; then
		dns_addrs=$dns_host # an IP address: nothing to resolve
	elif command -v getent >/dev/null 2>&1; then
		if out=$(getent hosts "$dns_host" 2>&1); then
			dns_addrs=$(printf '%s\n' "$out" | sed -n 's/^\([^[:space:]]*\)[[:space:]].*/\1/p' | sort -u)
		else
			dns_err="getent hosts $dns_host: no address (exit $?)"
		fi
	elif command -v nslookup >/dev/null 2>&1; then
		out=$(nslookup "$dns_host" 2>&1)
		dns_addrs=$(printf '%s\n' "$out" | sed -n '/^Name:/,$s/^Address[^:]*: *\([^ ]*\).*/\1/p' | sort -u)
		[ -n "$dns_addrs" ] || dns_err="nslookup $dns_host: $(oneline "$out")"
	else
		dns_err='no resolver tool (getent or nslookup) in the probe image'
	fi
	addr_json=''
	for a in $dns_addrs; do
		addr_json="$addr_json${addr_json:+,}$(js "$a")"
	done
	dns_json="{\"host\":$(js "$dns_host"),\"addresses\":[$addr_json],\"error\":$(jsn "$dns_err")}"

	# ---- login (tcp is derived from the login error by the judge) --------------------------------
	started_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)
	login_json='null'
	priv_json='null'
	uri_json='null'
	conn_json=''
	crud_json='null'
	rt_json='null'
	iso_json='null'

	# Login, then the connect time, in one psql: its first connection is the one login attempt
	# with the Secret's keys (a refusal's error text is what the judge reads); then 3 reconnects
	# (\connect), stamped by the clock before and after each, so psql's start-up is not in them
	# (the judge takes the median). psql ends a script at a failed \connect: the stamps before it
	# stay, and a login that failed printed none.
	{
		printf '\\! %s\n' "$clock_cmd"
		for i in 1 2 3; do
			printf '\\connect\n\\! %s\n' "$clock_cmd"
		done
	} >"$tmp/connect.sql"
	pq -f "$tmp/connect.sql" >"$tmp/connect.out" 2>"$tmp/connect.err"
	rc=$?
	if [ "$rc" -ne 0 ] && ! [ -s "$tmp/connect.out" ]; then
		login_json="{\"ok\":false,\"ms\":null,\"error\":$(js "$(oneline "$(cat "$tmp/connect.err")")")}"
	else
		samples=''
		first='null'
		prev=''
		for stamp in $(cat "$tmp/connect.out"); do
			case $stamp in
				'' | *[!0-9.]*) continue ;;
			esac
			now=$(to_us "$stamp")
			if [ -n "$prev" ]; then
				ms=$(ms_between "$prev" "$now")
				samples="$samples${samples:+,}$ms"
				[ "$first" != "null" ] || first=$ms
			fi
			prev=$now
		done
		connect_ms=$first
		timing="\"connect_samples_ms\":[$samples]"
		# One session for the role's facts, the isolation query (checks.ISOLATION_SQL, given whole
		# in PROBE_ISOLATION_SQL) and the timed round trips (psql's \timing). No ON_ERROR_STOP: a
		# failed statement leaves its row out (its error is on stderr) and the next one still runs.
		# Fields are separated by US (\037): the JSON and the target name (the query never picks
		# one with a control character) have none.
		us=$(printf '\037')
		{
			printf '%s\n' '\echo @login'
			printf '%s;\n' "${PROBE_LOGIN_SQL:-}"
			printf '%s\n' '\echo @privileges'
			printf '%s;\n' "${PROBE_PRIVILEGES_SQL:-}"
			printf '%s\n' '\echo @isolation'
			printf '%s;\n' "${PROBE_ISOLATION_SQL:-}"
			printf '%s\n' '\echo @end'
			printf '%s\n' '\timing on'
			i=0
			while [ "$i" -lt "$roundtrips" ]; do
				printf '%s;\n' "${PROBE_PING_SQL:-}"
				i=$((i + 1))
			done
		} | pq -F "$us" >"$tmp/info.out" 2>"$tmp/info.err"
		info_rc=$?
		times=$(sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' "$tmp/info.out" | tr '\n' ',' | sed 's/,$//')
		[ -z "$times" ] || rt_json="[$times]"
		info=$(sed -n '/^@login$/{n;p;}' "$tmp/info.out")
		priv=$(sed -n '/^@privileges$/{n;p;}' "$tmp/info.out")
		iso_row=$(sed -n '/^@isolation$/{n;p;}' "$tmp/info.out")
		info_err=$(cat "$tmp/info.err")
		[ -n "$info_err" ] || info_err="psql exited with status $info_rc"
		case $info in
			'' | @*)
				login_json="{\"ok\":true,\"ms\":$connect_ms,$timing,\"error\":null}"
				;;
			*)
				IFS=$us read -r r_user r_db r_ver <<-EOF
	$info
	EOF
				login_json="{\"ok\":true,\"ms\":$connect_ms,$timing,\"error\":null,\"current_user\":$(jsn "$r_user"),\"database\":$(jsn "$r_db"),\"server_version\":$(jsn "$r_ver")}"
				;;
		esac
		case $priv in
			'' | @*)
				priv_json="{$(err_fields "$info_err")}"
				;;
			*)
				IFS=$us read -r r_super r_crole r_cdb r_repl r_bypass <<-EOF
	$priv
	EOF
				priv_json="{\"rolsuper\":$(jbool "$r_super"),\"rolcreaterole\":$(jbool "$r_crole"),\"rolcreatedb\":$(jbool "$r_cdb"),\"rolreplication\":$(jbool "$r_repl"),\"rolbypassrls\":$(jbool "$r_bypass")}"
				;;
		esac

		# ---- crud ----------------------------------------------------------------------------
		table="${PROBE_CRUD_TABLE:-}"
		{
			printf '%s\n' '\echo @step create'
			printf '%s;\n' "${PROBE_CRUD_CREATE_SQL:-}"
			printf '%s\n' '\echo @step insert'
			printf '%s;\n' "${PROBE_CRUD_INSERT_SQL:-}"
			printf '%s\n' '\echo @step select'
			printf '%s;\n' "${PROBE_CRUD_SELECT_SQL:-}"
			printf '%s\n' '\echo @step update'
			printf '%s;\n' "${PROBE_CRUD_UPDATE_SQL:-}"
			printf '%s\n' '\echo @step delete'
			printf '%s;\n' "${PROBE_CRUD_DELETE_SQL:-}"
			printf '%s\n' '\echo @step drop'
			printf '%s;\n' "${PROBE_CRUD_DROP_SQL:-}"
			printf '%s\n' '\echo @step done'
		} | pq -v ON_ERROR_STOP=1 >"$tmp/crud.out" 2>"$tmp/crud.err"
		crud_rc=$?
		steps=''
		last=''
		while read -r s; do
			[ -n "$last" ] && steps="$steps${steps:+,}\"$last\""
			last=$s
		done <<-EOF
	$(sed -n 's/^@step //p' "$tmp/crud.out")
	EOF
		# the one value the select and the update (RETURNING) print right after their step marker
		selected=$(sed -n '/^@step select$/{n;/^@step /!p;}' "$tmp/crud.out" | head -n 1)
		updated=$(sed -n '/^@step update$/{n;/^@step /!p;}' "$tmp/crud.out" | head -n 1)
		if [ "$crud_rc" -eq 0 ] && [ "$last" = "done" ]; then
			crud_json="{\"table\":$(js "$table"),\"steps\":[$steps],\"failed_step\":null,\"error\":null,\"selected\":$(jsn "$selected"),\"updated\":$(jsn "$updated")}"
		else
			[ -n "$last" ] || last=create
			err=$(cat "$tmp/crud.err")
			[ -n "$err" ] || err="psql exited with status $crud_rc"
			pq -c "${PROBE_CRUD_CLEANUP_SQL:-}" >/dev/null 2>&1 || true
			crud_json="{\"table\":$(js "$table"),\"steps\":[$steps],\"failed_step\":$(js "$last"),$(err_fields "$err"),\"selected\":$(jsn "$selected"),\"updated\":$(jsn "$updated")}"
		fi

		# ---- uri, exactly as given (nothing from the individual keys may leak in) -------------
		uri_json=$(as_given "${DB_URI:-}")

		# ---- connection keys: each Secret key the config marks as a connection string -------
		# DB_CONN_KEYS names them; DB_CONN_<k> holds the k-th (by secretKeyRef, optional: an
		# unset one is reported as not given). Used exactly as given, like the uri.
		k=0
		for key in ${DB_CONN_KEYS:-}; do
			eval "conn_value=\${DB_CONN_$k:-}"
			conn_json="$conn_json${conn_json:+,}$(js "$key"):$(as_given "$conn_value")"
			k=$((k + 1))
		done

		# ---- isolation: the query's row (above), then ONE login that must be refused ----------
		case $iso_row in
			*"$us{"*"}") ;; # target (maybe empty), US, the facts' JSON object
			*) iso_row='' ;;
		esac
		if [ -z "$iso_row" ]; then
			iso_json="{\"refused_login\":null,$(err_fields "$info_err")}"
		else
			login_db=${iso_row%%"$us"*}
			facts=${iso_row#*"$us"}
			login_part='null'
			if [ -n "$login_db" ]; then
				# PGDATABASE, not -d: a name with '=' would be read as a connection string
				if out=$(PGDATABASE=$login_db pq -c "${PROBE_PING_SQL:-}" 2>&1); then
					login_part="{\"database\":$(js "$login_db"),\"connected\":true,\"error\":null}"
				else
					login_part="{\"database\":$(js "$login_db"),\"connected\":false,$(err_fields "$out")}"
				fi
			fi
			iso_json="${facts%\}},\"refused_login\":$login_part,\"error\":null}"
		fi
	fi

	finished_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)
	target="{\"host\":$(jsn "${DB_HOST:-}"),\"port\":$(jnum "${DB_PORT:-}"),\"database\":$(jsn "${DB_NAME:-}"),\"user\":$(jsn "${DB_USER:-}")}"
	printf '{"schema":"postgres-apps.verification.report/v3","app":%s,"runner":"pod","target":%s,"started_at":"%s","finished_at":"%s","clock":"%s","dns":%s,"tcp":null,"login":%s,"uri":%s,"connection_keys":{%s},"crud":%s,"privileges":%s,"isolation":%s,"roundtrips_ms":%s}\n' \
		"$(jsn "${PROBE_APP:-}")" "$target" "$started_at" "$finished_at" "$clock" \
		"$dns_json" "$login_json" "$uri_json" "$conn_json" "$crud_json" "$priv_json" "$iso_json" "$rt_json"
	exit 0
}

# ---- a namespace's probe pod: every app of the pod in one container --------------------------
# App i's variables arrive as P<i>_<NAME> for each NAME in PROBE_APP_VARS (its Secret's keys by
# secretKeyRef, optional, so a missing Secret or key fails that app alone; its statements as
# values). Each app runs in a subshell that gets exactly its own values under the plain names and
# none of any other app's: the other apps' P<j>_* are unset there before psql runs. PROBE_LANES
# subshells run at once, each taking every PROBE_LANES-th app in turn, so the connect and
# round-trip times are not those of a node busy with every app at once. A Secret variable that
# is not set at all (PROBE_SECRET_VARS) is reported as "@missing <NAME>…" instead of probing.
# Output: "@app <i>" then that app's output, for every app in order, once all have run.

run_app() {
	i=$1
	for v in $PROBE_APP_VARS; do
		if eval "[ -n \"\${P${i}_$v+set}\" ]"; then
			eval "$v=\$P${i}_$v"
			export "$v"
		else
			unset "$v"
		fi
	done
	j=0
	while [ "$j" -lt "$PROBE_APPS" ]; do
		for v in $PROBE_APP_VARS; do
			unset "P${j}_$v"
		done
		j=$((j + 1))
	done
	missing=''
	for v in $PROBE_SECRET_VARS; do
		eval "[ -n \"\${$v+set}\" ]" || missing="$missing $v"
	done
	if [ -n "$missing" ]; then
		printf '@missing%s\n' "$missing"
		exit 0
	fi
	probe_app
}

if [ -n "${PROBE_APPS:-}" ]; then
	out_dir=$(mktemp -d 2>/dev/null) || { out_dir="${TMPDIR:-/tmp}/probes.$$"; mkdir -p "$out_dir"; }
	lanes="${PROBE_LANES:-1}"
	lane=0
	while [ "$lane" -lt "$lanes" ]; do
		(
			i=$lane
			while [ "$i" -lt "$PROBE_APPS" ]; do
				(run_app "$i") >"$out_dir/app-$i" 2>&1
				i=$((i + lanes))
			done
		) &
		lane=$((lane + 1))
	done
	wait
	i=0
	while [ "$i" -lt "$PROBE_APPS" ]; do
		printf '@app %s\n' "$i"
		cat "$out_dir/app-$i" 2>/dev/null
		i=$((i + 1))
	done
	rm -rf "$out_dir"
	exit 0
fi

probe_app
