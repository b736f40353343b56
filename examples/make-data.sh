#!/bin/sh
# Generate (or update) the small example tree that jobs.d/ backs up, under
# var/ (git-ignored). Each call changes a few files, so that repeated
# `make run` show increments being written.
set -eu
root=${1:-var/example}
home="$root/home"
if [ ! -d "$home" ]; then
    mkdir -p "$home/Documents/letters" "$home/Projects/strata-demo/src" \
        "$home/Projects/strata-demo/node_modules/left-pad" "$home/Music" \
        "$home/.config/editor" "$home/.cache/thumbs"
    printf 'Dear team,\nthe backups work.\n' > "$home/Documents/letters/team.txt"
    printf '# Notes\n' > "$home/Documents/notes.md"
    printf 'fn main() {}\n' > "$home/Projects/strata-demo/src/main.rs"
    printf 'module.exports = 1\n' > "$home/Projects/strata-demo/node_modules/left-pad/index.js"
    printf 'build output\n' > "$home/Projects/strata-demo/build.log"
    printf 'not really music\n' > "$home/Music/song.mp3"
    printf 'theme = dark\n' > "$home/.config/editor/settings.toml"
    printf 'cached\n' > "$home/.cache/thumbs/1.png"
    printf 'export PATH\n' > "$home/.profile"
    ln -s Documents/notes.md "$home/notes-link"
fi
# One change per call: a line appended to the notes (tracked), and a new
# scratch file that replaces the previous one (included only).
date -u '+- %Y-%m-%dT%H:%M:%SZ: make run' >> "$home/Documents/notes.md"
rm -f "$home"/Music/scratch-*.txt
date -u '+scratch %s' > "$home/Music/scratch-$(date -u +%s).txt"
# The backups' parent folder: strata never creates a destination's
# parents (an unmounted disk must not be mistaken for an empty one).
mkdir -p "$root/../backup"
echo "example data in $home"
