# Filters `go test -v` into progress: a line when each top-level test starts and when it ends (with its time);
# the whole output of a test that fails; whatever comes after a package's last test (a panic, a timeout, the
# log check of TestMain); and the runner's closing lines (PASS, FAIL, ok), which CI reads. The output of a test
# that passes is dropped. Tests that run in parallel would mix their output: these run one at a time.
/^=== RUN / { if ($3 !~ /\//) { print; fflush() }; next }
/^=== (PAUSE|CONT|NAME) / { next }
/^--- (PASS|SKIP): / { print; fflush(); held = ""; failed = 0; next }
/^--- FAIL: / { printf "%s", held; print; fflush(); held = ""; failed = 1; next }
/^ +--- (PASS|SKIP|FAIL): / { if (failed) { print; fflush() }; next }
/^(PASS|FAIL)$/ || /^(ok|FAIL|\?) / || /^(ok|FAIL)\t/ { printf "%s", held; print; fflush(); held = ""; failed = 0; next }
{ held = held $0 "\n" }
END { printf "%s", held }
