#!/usr/bin/env bash
# Model-checks spec/iotkx.pml with spin (docs/model/README.md):
#   hold    the model as implemented: every property must hold (exhaustive search, no error);
#   refute  a mutant (one check removed) or a sanity/limit run: spin must find a counterexample,
#           and it must violate the named assertion (so the property is not vacuous).
# Exit 0 only if every run meets its expectation. Prints one summary line per run.
# Usage: spec/verify.sh [name-filter-regex]     (work files in $VERIFY_WORK or a temp dir)
set -uo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
filter="${1:-.}"
if [[ -n "${VERIFY_WORK:-}" ]]; then work="$VERIFY_WORK"; keep=1; else work="$(mktemp -d -t iotkx-spin.XXXXXX)"; keep=0; fi
mkdir -p "$work"
# Safety search only (assertions + invalid end states); memory capped so a bad bound fails fast.
PAN_CC="-O2 -w -DSAFETY -DMEMLIM=2048"
PAN_RUN="-m200000"

for tool in spin gcc; do
  command -v "$tool" >/dev/null || { echo "verify.sh: $tool not found (apt-get install -y spin gcc)" >&2; exit 2; }
done

# name | expect | -D flags | assertion that must fail (refute) | what it shows
RUNS=$(cat <<'EOF'
model|hold||-|the implementation: P1-P5 hold against the Dolev-Yao relay
model-rotation|hold|-DROT -DLOWNONCE -DMAXRESTART=0 -DMAXR=0 -DNOREVOKE|-|R rotates E, A learns the retired e1, relay count hints both ways: P1-P4, P6 hold
model-live|hold|-DLIVE -DLOWNONCE -DMAXRESTART=1 -DMAXR=0 -DNOREVOKE|-|nonce lies, then an honest relay: the device ends active, no live offer behind a nonce gap
M1-rkey-unverified|refute|-DMUT_RKEY -DONLY=1|P1_attacker_never_learns_K|device wraps K for a key record it did not verify
M2-acceptance-unbound|refute|-DMUT_ACC_LOG -DONLY=2|P2_device_activates_only_receiver_accepted_epoch|device takes any R-signed KeyAccepted log (no epoch/proof match)
M3-contract-accept-no-enrol|refute|-DMUT_CONTRACT_NO_ENROL -DONLY=3|P3_receiver_accepts_only_enrolled_device|acceptKey without the NotEnrolled check
M4a-pending-after-broadcast|refute|-DMUT_PENDING_LATE -DONLY=4|P4_no_epoch_nonce_or_seq_reuse|device persists pending only after broadcasting
M4b-seq-hwm-after-use|refute|-DMUT_SEQ_LATE -DONLY=4|P4_no_epoch_nonce_or_seq_reuse|device writes the seq high-water mark after use
M5-no-seen-seq|refute|-DMUT_NO_SEEN -DONLY=5|P5_reading_accepted_at_most_once|receiver without seen-seq tracking
M6-receiver-k-after-accept|refute|-DMUT_RECV_K_LATE -DONLY=2|P2_device_activates_only_receiver_accepted_epoch|receiver persists K only after sending the acceptance
M7-rewrap-same-K|refute|-DROT -DLOWNONCE -DMAXRESTART=0 -DMAXR=0 -DNOREVOKE -DMUT_REWRAP -DONLY=6|P6_attacker_never_learns_K_sealed_under|device re-wraps the pending K for the newer receiver key (issue 15 item 1)
M8-no-renonce|refute|-DLIVE -DLOWNONCE -DMAXRESTART=1 -DMAXR=0 -DNOREVOKE -DMUT_NO_RENONCE -DONLY=0|LIVE_active_after_honesty|device never re-signs at a lower nonce (issue 15 item 3: stranded behind a gap)
D2-no-acceptance-sig|hold|-DMUT_ACC_NOSIG -DONLY=2|-|defence in depth: proof match alone still gives P2 while K is secret
D3-receiver-no-enrol|hold|-DMUT_RECV_NO_ENROL -DONLY=3|-|defence in depth: the contract alone still gives P3
L1-chain-accepted|refute|-DLIMIT_CHAIN -DONLY=0|LIMIT_device_activates_only_chain_accepted|known limit: R's broadcast acceptance activates K before (or without) taking effect on chain (DoS only)
R1-rotation|refute|-DREACH=1 -DONLY=0|REACHED_milestone|sanity: the device activates epoch 2
R2-reading-epoch2|refute|-DREACH=2 -DONLY=0|REACHED_milestone|sanity: the receiver accepts a reading of epoch 2
R3-accept|refute|-DREACH=3 -DONLY=0|REACHED_milestone|sanity: acceptKey succeeds
R4-reject|refute|-DREACH=4 -DONLY=0|REACHED_milestone|sanity: rejectKey succeeds
R5-restart-pending|refute|-DREACH=5 -DONLY=0|REACHED_milestone|sanity: activation after a power cut with a signed pending offer
R6-reenrol|refute|-DREACH=6 -DONLY=0|REACHED_milestone|sanity: acceptance after revocation and re-enrolment
R7-expiry|refute|-DREACH=7 -DONLY=0|REACHED_milestone|sanity: epoch 1 expires, epoch 2 is accepted
R8-rekey-accepted|refute|-DROT -DLOWNONCE -DMAXRESTART=0 -DMAXR=0 -DNOREVOKE -DREACH=8 -DONLY=0|REACHED_milestone|sanity: a fresh K drawn on a key version change is accepted under version 2
R9-superseded-accepted|refute|-DROT -DLOWNONCE -DMAXRESTART=0 -DMAXR=0 -DNOREVOKE -DREACH=9 -DONLY=0|REACHED_milestone|sanity: the superseded offer is the accepted one and its K is activated
EOF
)

field() { sed -n "s/.*$1 *\([0-9][0-9.e+]*\).*/\1/p" "$2" | head -1; }

failures=0
total=0
echo "$(spin -V)   model: spec/iotkx.pml   depth: search depth (hold) / counterexample length (refute)"
printf '%-30s %-7s %-8s %12s %6s %8s  %s\n' run expect result states depth seconds detail
while IFS='|' read -r name expect flags want what; do
  [[ -z "$name" ]] && continue
  [[ "$name" =~ $filter ]] || continue
  total=$((total + 1))
  dir="$work/$name"
  mkdir -p "$dir"
  cp "$here/iotkx.pml" "$dir/iotkx.pml"
  # shellcheck disable=SC2086
  (cd "$dir" && spin $flags -a iotkx.pml >spin.out 2>&1) || { echo "$name: spin -a failed"; cat "$dir/spin.out"; failures=$((failures + 1)); continue; }
  # A refute run keeps searching for shorter counterexamples (-i, exact with -DREACH): the trail
  # it leaves is the shortest (breadth-first search would need several GB for some runs).
  cc="$PAN_CC"; run="$PAN_RUN"
  if [[ "$expect" == refute ]]; then cc="${cc/-O2/-O1} -DREACH"; run="$run -i"; fi
  # shellcheck disable=SC2086
  (cd "$dir" && gcc $cc -o pan pan.c >gcc.out 2>&1) || { echo "$name: gcc failed"; cat "$dir/gcc.out"; failures=$((failures + 1)); continue; }
  start=$(date +%s.%N)
  # shellcheck disable=SC2086
  (cd "$dir" && ./pan $run >pan.out 2>&1)
  secs=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
  out="$dir/pan.out"
  errors=$(sed -n 's/.*errors: \([0-9]*\).*/\1/p' "$out" | head -1)
  states=$(sed -n 's/^ *\([0-9][0-9]*\) states, stored.*/\1/p' "$out" | head -1)
  depth=$(sed -n 's/.*depth reached \([0-9]*\).*/\1/p' "$out" | head -1)
  violated=$(sed -n 's/.*assertion violated \([A-Za-z0-9_]*\).*/\1/p' "$out" | head -1)
  result=ERROR
  detail="$what"
  if [[ -z "$errors" || -z "$states" ]]; then
    detail="pan did not finish: $(tail -3 "$out" | tr '\n' ' ')"
  elif grep -qE 'max search depth too small|out of memory|memory limit|Search not completed' "$out" && [[ "$expect" == hold ]]; then
    detail="search incomplete: $(grep -E 'max search depth|memory' "$out" | head -1)"
  elif [[ "$expect" == hold && "$errors" == 0 ]]; then
    result=ok
  elif [[ "$expect" == hold ]]; then
    detail="VIOLATION of ${violated:-?} (trail: $dir)"
  elif [[ "$errors" != 0 && "$violated" == "$want" ]]; then
    result=refuted
    # depth column: the length (pan steps) of the shortest counterexample found
    depth=$(sed -n 's/.*assertion violated .*(at depth \([0-9]*\)).*/\1/p' "$out" | tail -1)
    # Replay the counterexample: the model's printf lines are the attack, step by step.
    # shellcheck disable=SC2086
    (cd "$dir" && spin $flags -t iotkx.pml 2>&1 | sed -n 's/^ *\(OP\|CH\|A\|R\|D\) /\1 /p' >trail.txt)
  elif [[ "$errors" != 0 ]]; then
    detail="violated ${violated:-?}, expected $want (trail: $dir)"
  else
    detail="NOT refuted: no counterexample for $want"
  fi
  [[ "$result" == ERROR ]] && failures=$((failures + 1))
  printf '%-30s %-7s %-8s %12s %6s %8s  %s\n' "$name" "$expect" "$result" "${states:-?}" "${depth:-?}" "$secs" "$detail"
  if [[ "$result" == refuted && -n "${VERIFY_TRAILS:-}" ]]; then
    sed 's/^/      | /' "$dir/trail.txt"
  fi
done <<<"$RUNS"

# Temporary work files go unless a run failed (then its trail is kept for `spin -t`).
if [[ "$keep" == 0 && "$failures" == 0 ]]; then rm -rf "$work"; work="(removed)"; fi
echo "SUMMARY runs=$total failed=$failures work=$work"
[[ "$total" -gt 0 && "$failures" == 0 ]]
