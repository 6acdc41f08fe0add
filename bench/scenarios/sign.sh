# shellcheck shell=bash
# Scenario 9: render + sign a ~2 KB and a ~50 KB session (build/bench_sign), against
# OpenSSL HMAC-SHA256 alone on the same bytes.
# Sourced by bench/run (see the contract at the top of bench/run).

sign_seconds=1
[ "$BENCH_SMOKE" -eq 1 ] && sign_seconds=0.05
bench_log "sign: bench_sign (${sign_seconds}s × $runs runs per operation, core $sut_core)"
bench_pinned "$sut_core" "$bench_sign" --seconds "$sign_seconds" --runs "$runs" \
    >"$work/sign.md" 2>"$work/sign.err" || bench_die "bench_sign failed: $(tail -3 "$work/sign.err")"
vhb sign --samples "$samples" "$work/sign.md"
