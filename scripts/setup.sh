#!/usr/bin/env bash
# Prepares everything the app needs, once: a virtual environment with the pinned packages (.venv) and,
# where apt is usable, the Debian TTS tools (flite and festival add voices; espeak-ng itself comes from pip).
# Sourced by scripts/demo.sh and scripts/test.sh; safe to run again (it only redoes what changed).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($PYTHON --version)"
  $PYTHON -m venv .venv
fi

stamp=.venv/.lit-app-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "[setup] installing pinned packages into .venv (first time: about 2 minutes, 5 GB)"
  # The CUDA build of torch 2.11 (the GPU machine's version) is most of the 5 GB; pip's wheel cache
  # would hold a second copy, so it is off.
  free_kb=$(df -Pk . | awk 'NR == 2 {print $4}')
  if [ "${free_kb:-0}" -lt $((7 * 1024 * 1024)) ]; then
    echo "[setup] warning: $((free_kb / 1024)) MB free on $(df -P . | awk 'NR == 2 {print $6}'); the install needs" \
         "about 7 GB while it runs (5 GB after). Free some space if it fails with 'No space left on device'."
  fi
  export PIP_NO_CACHE_DIR=1
  .venv/bin/python -m pip install -q --upgrade pip
  if ! .venv/bin/python -m pip install -q -e ".[dev]"; then
    echo "[setup] pip could not install the pinned packages into $PWD/.venv (free space now:" \
         "$(df -Ph . | awk 'NR == 2 {print $4}')). Fix the cause above and run this command again." >&2
    exit 1
  fi
  echo "$want" > "$stamp"
fi

# festival and its three English voices are a third engine (the leave-one-engine-out victims use it), and its
# Italian, Catalan, Czech, Finnish, Telugu and Russian voices the accented speakers of `festival_accented`
# (lit_app/data/synth/accents.py lists them).
tts_packages="espeak-ng flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts festvox-italp16k
  festvox-itapc16k festvox-ca-ona-hts festvox-czech-dita festvox-czech-krb festvox-czech-machac festvox-czech-ph
  festvox-suopuhe-lj festvox-suopuhe-mv festvox-te-nsk festvox-ru"
tts_packages=$(echo $tts_packages)
if ! command -v flite >/dev/null 2>&1 || ! [ -d /usr/share/festival/voices/us/cmu_us_slt_arctic_hts ] \
   || ! [ -d /usr/share/festival/voices/finnish/suo_fi_lj_diphone ] \
   || ! [ -d /usr/share/festival/voices/russian/msu_ru_nsh_clunits ] \
   || ! [ -d /usr/share/festival/voices/telugu/telugu_NSK_diphone ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "[setup] installing the Debian TTS tools ($tts_packages)"
    if ! { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq $tts_packages >/dev/null 2>&1; }; then
      echo "[setup] could not install the TTS tools with apt: synthetic corpora will use espeak-ng voices only," \
           "and corpora that list flite or festival will stop with the command that installs them"
    fi
  else
    echo "[setup] flite or festival is not installed and apt is not usable here (need root): synthetic corpora" \
         "will use espeak-ng voices only. Install them (e.g. 'sudo apt-get install $tts_packages') for more voices."
  fi
fi

# More speakers for the leave-one-engine-out victims (issue 25), only on request: festival's other English voices
# (`festival_extra`), SVOX Pico (`pico`), RHVoice (`rhvoice`) and MBROLA's voices of other languages
# (`mbrola_accented`). Pico and the MBROLA voices are in Debian's non-free section, which this reads through a sources
# list of its own instead of changing the machine's.
more_voices="festival festvox-rablpc16k festvox-don festvox-us1 festvox-us2 festvox-us3 libttspico-utils rhvoice
  rhvoice-english festvox-kallpc16k mbrola mbrola-af1 mbrola-br1 mbrola-br2 mbrola-br3 mbrola-br4 mbrola-ca1
  mbrola-ca2 mbrola-cr1 mbrola-de1 mbrola-de2 mbrola-de3 mbrola-de4 mbrola-de5 mbrola-de6 mbrola-de7 mbrola-ee1
  mbrola-es1 mbrola-es2 mbrola-es3 mbrola-es4 mbrola-fr1 mbrola-fr2 mbrola-fr3 mbrola-fr4 mbrola-fr5 mbrola-fr6
  mbrola-fr7 mbrola-gr1 mbrola-gr2 mbrola-hb1 mbrola-ic1 mbrola-la1 mbrola-lt1 mbrola-lt2 mbrola-mx1 mbrola-mx2
  mbrola-nl2 mbrola-nl3 mbrola-pl1 mbrola-pt1 mbrola-ro1 mbrola-sw1 mbrola-sw2 mbrola-tr1 mbrola-tr2"
more_voices=$(echo $more_voices)
mbrola_voices_missing() {  # true when a voice of the list is not installed (the list grew once already)
  local package
  for package in $more_voices; do
    case $package in mbrola-*) [ -f "/usr/share/mbrola/${package#mbrola-}/${package#mbrola-}" ] || return 0 ;; esac
  done
  return 1
}
if [ "${LIT_APP_MORE_VOICES:-0}" = 1 ] && ! { command -v pico2wave && command -v RHVoice-test \
     && [ -d /usr/share/festival/voices/english/us3_mbrola ] && ! mbrola_voices_missing; } >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "[setup] installing more voices from Debian main and non-free ($more_voices)"
    apt_dir=$(mktemp -d)
    mkdir -p "$apt_dir/lists/partial"
    . /etc/os-release
    echo "deb http://deb.debian.org/debian ${VERSION_CODENAME:-bookworm} main contrib non-free" > "$apt_dir/sources.list"
    apt_options="-o Dir::Etc::sourcelist=$apt_dir/sources.list -o Dir::Etc::sourceparts=/dev/null
      -o Dir::State::Lists=$apt_dir/lists"
    if ! { apt-get $apt_options update -qq >/dev/null 2>&1 \
           && DEBIAN_FRONTEND=noninteractive apt-get $apt_options install -y -qq $more_voices >/dev/null 2>&1; }; then
      echo "[setup] could not install the extra voices; corpora that list festival_extra, pico, rhvoice or mbrola_accented will" \
           "stop with the command that installs them"
    fi
    rm -rf "$apt_dir"
  else
    echo "[setup] LIT_APP_MORE_VOICES=1 needs apt-get as root: install $more_voices from Debian's non-free section"
  fi
fi

# GnuSpeech and SAM (`gnuspeech`, `sam`, lit_app/data/synth/node_engines.py), also only on request: they run in
# Node.js (Debian's nodejs and npm), from the npm packages pinned by lit_app/data/synth/node/package-lock.json.
node_dir=lit_app/data/synth/node
node_stamp=$node_dir/node_modules/.lit-app-installed
node_want=$(sha256sum $node_dir/package-lock.json | cut -d' ' -f1)
if [ "${LIT_APP_MORE_VOICES:-0}" = 1 ] && { [ ! -f "$node_stamp" ] || [ "$(cat "$node_stamp")" != "$node_want" ]; }; then
  if ! command -v npm >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
      echo "[setup] installing Node.js (nodejs npm) for GnuSpeech and SAM"
      apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq nodejs npm >/dev/null 2>&1 \
        || echo "[setup] could not install Node.js with apt; corpora that list gnuspeech or sam will stop with this command"
    else
      echo "[setup] GnuSpeech and SAM need Node.js: install it (e.g. 'sudo apt-get install nodejs npm') and run this again"
    fi
  fi
  if command -v npm >/dev/null 2>&1; then
    echo "[setup] installing GnuSpeech and SAM from npm into $node_dir/node_modules"
    if (cd $node_dir && npm ci --no-audit --no-fund --loglevel=error >/dev/null); then
      echo "$node_want" > "$node_stamp"
    else
      echo "[setup] npm could not install GnuSpeech and SAM; corpora that list gnuspeech or sam will stop with this command"
    fi
  fi
fi
