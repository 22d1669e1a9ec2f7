#!/usr/bin/env bash
# The Debian packages beyond Python that Lyra's tests and demo use: the sound sources of the
# real-audio corpus (`lyra data corpus`) and Chromium (the browser tests). `make test`, `make demo`
# and .ci/run call it first.
#   tools/system_packages.sh                installs the missing ones where it can (root with
#                                           apt-get); else prints one line: what is missing and
#                                           how to add it. Never fails.
#   tools/system_packages.sh --check [sound|browser]
#                                           installs nothing: that line and exit 1 if any is missing
#                                           (the tests that need them skip with the line).
set -u

# The corpus's sources: lyra data corpus's SOURCES (tests/test_corpus.py checks they agree).
sound="fluidsynth fluid-soundfont-gm timidity freepats espeak-ng espeak-ng-data alsa-utils
    sound-theme-freedesktop frozen-bubble-data lmms-common hydrogen-data minetest-data"
browser="chromium"

installed() { dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null | grep -q '^ii'; }

# Whether a file the package installed is gone, or one of its programs cannot run.
damaged() {
    local path
    while IFS= read -r path; do
        [ -e "$path" ] || return 0
        [[ $path != */bin/* || -x $path ]] || return 0
    done < <(dpkg-query -L "$1" 2>/dev/null | grep '^/')
    return 1
}

# The packages not installed, or installed but damaged: a package counts only whole.
missing() {
    local pkg
    for pkg in "$@"; do
        if ! installed "$pkg" || damaged "$pkg"; then echo "$pkg"; fi
    done
}

# The one line: what is missing, what that means, how to add it (--reinstall for damaged ones).
report() {
    local pkg reinstall="" effects=""
    for pkg in "$@"; do installed "$pkg" && reinstall="--reinstall "; done
    [[ " $* " = *" $browser "* ]] && effects="the browser tests skip"
    [ "$*" != "$browser" ] &&
        effects="${effects:+$effects; }the corpus tests skip and make demo trains on synthetic audio"
    echo "missing system packages: $* ($effects); add them as root with:" \
        "apt-get install -y $reinstall$*"
}

install() {
    [ "$EUID" = 0 ] && command -v apt-get >/dev/null || return 1
    local attempt
    for attempt in 1 2; do
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            --no-install-recommends "$@" >/dev/null && return 0
        sleep 5
    done
    return 1
}

if [ "${1:-}" = --check ]; then
    case "${2:-all}" in
        sound) wanted=$sound ;;
        browser) wanted=$browser ;;
        *) wanted="$sound $browser" ;;
    esac
    # shellcheck disable=SC2086  # word splitting of the lists is meant
    lacking=$(missing $wanted)
    [ -z "$lacking" ] && exit 0
    # shellcheck disable=SC2086
    report $lacking
    exit 1
fi

# shellcheck disable=SC2086
lacking=$(missing $sound $browser)
[ -z "$lacking" ] && exit 0
# Only packages not installed at all are fetched: a damaged one is left for the line to name.
absent=$(for pkg in $lacking; do installed "$pkg" || echo "$pkg"; done)
# shellcheck disable=SC2086
[ -n "$absent" ] && install $absent
# shellcheck disable=SC2086
lacking=$(missing $lacking)
# shellcheck disable=SC2086
[ -n "$lacking" ] && report $lacking
exit 0
