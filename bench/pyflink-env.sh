# Sourced by the Nexmark scripts that run Apache Flink: makes sure PyFlink (PyPI apache-flink)
# is installed in $VENV (default target/flink-venv, or $FLINK_VENV) and Java is on the PATH.
VENV=${FLINK_VENV:-target/flink-venv}
command -v java >/dev/null || { echo "$0: Apache Flink needs Java 17 (java not found)" >&2; exit 1; }
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import pyflink" 2>/dev/null; then
  echo "== installing PyFlink into $VENV" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "apache-flink>=2.0,<3"
fi
