#!/bin/sh
# issue 17, session_overlap in the replay: the runs behind benchmarks/results/issue17-sessions-*.txt
# (from the repository's root, with the engine's session rule installed). Desks get the
# desk profile with session_overlap off (issue17-sessions-desk-policy.json) except in the
# "desk-shipped" run, which shows what the shipped desk profile costs them.
set -e
out=benchmarks/results
desk="--desk-policy-json $out/issue17-sessions-desk-policy.json"
owned="--strategy owner --strategy owner-24-7 --strategy owner-night --strategy owner-churn --strategy owner-padded"
run() {
  name=$1; shift
  { echo "\$ nirguard simulate --no-shadow --quiet --no-legend --jobs 2 $*"
    /usr/bin/time -f "cpu %U+%S s, wall %e s, max rss %M kB" \
      nirguard simulate --no-shadow --quiet --no-legend --jobs 2 "$@" 2>&1
    echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"; } > "$out/issue17-sessions-$name.txt"
}
for seed in 1 2 3; do
  run "scale0.25-seed$seed" --scale 0.25 --seed "$seed" --sessions $owned $desk
done
run "scale1-seed0" --scale 1 --seed 0 --sessions $owned $desk
for share in 0 0.05; do
  run "scale0.25-seed1-two$share" --scale 0.25 --seed 1 --sessions --two-devices "$share" --strategy owner $desk
done
run "scale0.25-seed1-overlap10" --scale 0.25 --seed 1 --sessions --strategy owner --strategy owner-24-7 \
  --policy-json '{"session_overlap": "10 minutes"}' $desk
run "scale0.25-seed1-desk-shipped" --scale 0.25 --seed 1 --sessions --strategy owner
for seed in 1 2 3; do
  run "scale0.25-seed$seed-off" --scale 0.25 --seed "$seed" --no-sessions --strategy owner --strategy owner-24-7 --strategy owner-night
done
for share in 0 0.05; do
  run "scale1-seed0-two$share" --scale 1 --seed 0 --sessions --two-devices "$share" --strategy owner $desk
done
