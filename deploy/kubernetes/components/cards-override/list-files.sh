#!/bin/sh
# Print the `files:` entries of the epidural-cds-cards configMapGenerator for a content
# directory: one per file, the key being its path with "/" written as "__". Run it in the
# overlay's folder and paste (or append) the output under `files:`:
#   sh path/to/components/cards-override/list-files.sh cards >> kustomization.yaml
set -eu
dir=${1:-cards}
find "$dir" -type f ! -name '*.py' ! -path '*/__pycache__/*' | LC_ALL=C sort | while read -r path; do
    key=$(printf '%s' "${path#"$dir"/}" | sed 's|/|__|g')
    printf '      - %s=%s\n' "$key" "$path"
done
