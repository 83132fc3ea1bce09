#!/usr/bin/env bash
# A microphone for machines with no sound card: a PulseAudio null sink whose monitor is the
# default source, so `paplay --device=virt FILE` is what any PortAudio input stream records.
# Needs pulseaudio, pulseaudio-utils and libasound2-plugins (the Makefile's system-test-deps).
set -euo pipefail
RATE="${1:-16000}"
STATE="${TMPDIR:-/tmp}/crywatch-virtual-mic"
mkdir -p "$STATE"

if ! pactl info >/dev/null 2>&1; then
  # -n: no default.pa, so no module looks for real hardware; runs fine as root in a container.
  setsid pulseaudio --daemonize=no --exit-idle-time=-1 --system=false -n \
      --load=module-native-protocol-unix >"$STATE/pulseaudio.log" 2>&1 &
  for _ in $(seq 100); do pactl info >/dev/null 2>&1 && break; sleep 0.1; done
  pactl info >/dev/null 2>&1 || { echo "pulseaudio did not start: $(tail -3 "$STATE/pulseaudio.log")" >&2; exit 1; }
fi

if ! pactl list short sinks | grep -q $'^[0-9]*\tvirt\t'; then
  pactl load-module module-null-sink sink_name=virt rate="$RATE" channels=1 \
      sink_properties=device.description=virt >/dev/null
fi
pactl set-default-sink virt
pactl set-default-source virt.monitor

# An idle null sink renders in ~2 s bursts, which would starve an input stream of callbacks:
# keep it running with a stream of silence.
if ! { [ -f "$STATE/keepalive.pid" ] && kill -0 "$(cat "$STATE/keepalive.pid")" 2>/dev/null; }; then
  setsid pacat --playback --raw --format=s16le --rate="$RATE" --channels=1 --latency-msec=20 \
      --device=virt /dev/zero >/dev/null 2>&1 &
  echo $! >"$STATE/keepalive.pid"
fi
sleep 0.3
echo "virtual microphone ready (sink virt, source virt.monitor)"
