#!/bin/sh
# The copy a `deletion: drop` app gets before it is dropped (postgres_apps/retirement.py runs this
# on the Pulumi host, or as the command of a short-lived pod in the admin Secret's namespace).
#
#   sh retirement.sh DATABASE FILE     libpq's PG* variables name the server and the admin login
#
# Dumps DATABASE in pg_dump's custom format to FILE.partial, reads it back with pg_restore --list
# (kept as FILE.list), checks that the archive names DATABASE, and only then renames it to FILE.
# Prints "==list", the listing, and a last line "==copy <bytes> <sha256>". Any failure: a message
# on stderr, a non-zero exit, and no FILE (a partial dump is removed).
set -eu
database=$1
file=$2
trap 'rm -f "$file.partial"; [ -e "$file" ] || rm -f "$file.list"' EXIT
pg_dump --format=custom --no-password --dbname="$database" --file="$file.partial"
[ -s "$file.partial" ] || { echo "pg_dump wrote nothing to $file.partial" >&2; exit 3; }
pg_restore --list "$file.partial" >"$file.list"
found=$(sed -n 's/^;[[:space:]]*[Dd]bname:[[:space:]]*//p' "$file.list" | head -n 1)
if [ "$found" != "$database" ]; then
  echo "the dump names database '$found', not '$database'" >&2
  exit 3
fi
size=$(wc -c <"$file.partial" | tr -d ' ')
sum=$(sha256sum "$file.partial" | cut -d ' ' -f 1)
mv "$file.partial" "$file"
echo "==list"
cat "$file.list"
echo "==copy $size $sum"
