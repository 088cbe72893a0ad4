# Shared by the scripts: find an interpreter and keep a virtual environment up to date.

find_python() {  # find_python 3.12 -> path of a python3.12
  local version=$1 candidate
  for candidate in "$(command -v "python$version" 2>/dev/null || true)" \
      "$HOME"/.pyenv/versions/"$version"*/bin/"python$version" \
      /usr/bin/"python$version" /usr/local/bin/"python$version"; do
    if [ -n "$candidate" ] && [ -x "$candidate" ] && "$candidate" -c 'import sys' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  echo "python$version not found: install it (pyenv install $version) and run again" >&2
  return 1
}

ensure_venv() {  # ensure_venv DIR PYVERSION DJANGO_SPEC [EXTRAS]
  local dir=$1 version=$2 django=$3 extras=${4:-test} python stamp
  python=$(find_python "$version")
  if [ ! -x "$dir/bin/python" ]; then
    echo "== creating $dir with $python"
    "$python" -m venv "$dir"
    "$dir/bin/python" -m pip install -q --upgrade pip
  fi
  stamp="$dir/.installed-$(cat pyproject.toml | sha1sum | cut -c1-12)-$extras-$(echo "$django" | sha1sum | cut -c1-8)"
  if [ ! -f "$stamp" ]; then
    echo "== installing into $dir ($django, extras: $extras)"
    "$dir/bin/python" -m pip install -q -e ".[$extras]" "$django"
    rm -f "$dir"/.installed-*
    touch "$stamp"
  fi
}

ensure_browser() {  # Debian's Chromium and chromedriver, for the admin's browser tests
  if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
    return 0
  fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "== installing chromium and chromium-driver (Debian packages)"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      chromium chromium-driver >/dev/null
  else
    echo "== chromium/chromedriver missing and cannot be installed here: browser tests skip"
  fi
}
