# A GlusterFS volume for benchmarks, made as the integration tests make theirs
# (integration-tests/src/gluster.rs, DEPLOY.md "GlusterFS"): replica 2, both bricks in one
# folder, `performance.stat-prefetch off`, one FUSE mount with the kernel's attribute, entry and
# negative caches off. Sourced by scripts/bench.sh; needs root, glusterfs-server and
# glusterfs-client, and /dev/fuse.
#
#   gv_up DIR    makes bricks and a mount under DIR (which must exist) and sets GV_NAME,
#                GV_MOUNT (the mount point), GV_MOUNT_PID (its FUSE client) and GV_BRICK_PIDS
#   gv_down      stops and deletes the volume, by pid: the FUSE client (then a lazy unmount if
#                it is still mounted), the volume, its brick and self-heal processes if glusterd
#                left any, and glusterd itself if gv_up started it (one already running is used
#                and left running)
#
# Every gluster, glusterfs and glusterd process started here runs in the foreground (-N), so
# that its pid is known.

GV_NAME=""
GV_MOUNT=""
GV_MOUNT_PID=""
GV_BRICK_PIDS=""
GV_DAEMON_PIDS=""
GV_GLUSTERD_PID=""

gv_log() { printf '[gluster %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

# Why GlusterFS cannot run here, if it cannot (prints nothing when it can).
gv_unavailable() {
    local p
    [[ $(id -u) == 0 ]] || { echo "GlusterFS needs root (glusterd, FUSE mounts)"; return; }
    for p in glusterd gluster glusterfs glusterfsd; do
        PATH=$PATH:/usr/sbin:/sbin command -v "$p" >/dev/null ||
            { echo "$p is not installed (Debian packages glusterfs-server, glusterfs-client)"; return; }
    done
    [[ -e /dev/fuse ]] || echo "there is no /dev/fuse"
}

# gluster --mode=script ARGS…, again while glusterd is busy with another operation (at most 60 s).
gv_gluster() {
    local out i
    for i in $(seq 1 300); do
        if out=$(gluster --mode=script "$@" </dev/null 2>&1); then
            printf '%s\n' "$out"
            return 0
        fi
        [[ $out == *"Another transaction"* || $out == *"Locking failed"* ]] || break
        sleep 0.2
    done
    gv_log "gluster $*: $out"
    return 1
}

gv_answers() { gluster --mode=script volume list </dev/null >/dev/null 2>&1; }

# Whether PATH is a mount point now.
gv_mounted() { awk -v p="$1" '$5 == p { f = 1 } END { exit !f }' /proc/self/mountinfo; }

# The pids of the processes running for the volume (bricks, self-heal daemon), from its status.
gv_status_pids() {
    gv_gluster volume status "$GV_NAME" --xml |
        sed -n 's:.*<pid>\([0-9][0-9]*\)</pid>.*:\1:p' | awk '$1 > 0' | sort -u | tr '\n' ' '
}

gv_up() {
    local dir=$1 why host i
    export PATH=$PATH:/usr/sbin:/sbin
    why=$(gv_unavailable)
    [[ -z $why ]] || { gv_log "$why"; return 1; }
    if ! gv_answers; then
        glusterd -N -L WARNING -l "$dir/glusterd.log" </dev/null >/dev/null 2>&1 &
        GV_GLUSTERD_PID=$!
        for i in $(seq 1 600); do
            gv_answers && break
            kill -0 "$GV_GLUSTERD_PID" 2>/dev/null || { gv_log "glusterd ended: $(tail -3 "$dir/glusterd.log")"; return 1; }
            sleep 0.1
        done
        gv_answers || { gv_log "glusterd did not answer within 60 s"; return 1; }
    fi
    GV_NAME=sft-bench-$$
    # GlusterFS refuses 127.0.0.1 as a brick's host but takes the machine's name where it
    # resolves to this machine; `force`: the bricks are on the root file system.
    host=$(cat /proc/sys/kernel/hostname)
    mkdir -p "$dir/mount"
    gv_gluster volume create "$GV_NAME" replica 2 "$host:$dir/brick0" "$host:$dir/brick1" force >/dev/null &&
        gv_gluster volume set "$GV_NAME" performance.stat-prefetch off >/dev/null &&
        gv_gluster volume start "$GV_NAME" >/dev/null || return 1
    GV_DAEMON_PIDS=$(gv_status_pids)
    GV_BRICK_PIDS=$(gv_gluster volume status "$GV_NAME" --xml | awk '
        /<node>/ { path = ""; pid = 0 }
        /<path>/ { gsub(/.*<path>|<\/path>.*/, ""); path = $0 }
        /<pid>/ { gsub(/.*<pid>|<\/pid>.*/, ""); pid = $0 }
        /<\/node>/ { if (path ~ /^\// && pid > 0) print pid }' | tr '\n' ' ')
    glusterfs -N --attribute-timeout=0 --entry-timeout=0 --negative-timeout=0 \
        --volfile-server="$host" --volfile-id="$GV_NAME" -l "$dir/mount.log" "$dir/mount" \
        </dev/null >/dev/null 2>&1 &
    GV_MOUNT_PID=$!
    for i in $(seq 1 600); do
        if gv_mounted "$dir/mount" && [[ $(stat -f -c %t "$dir/mount") == 65735546 ]]; then
            GV_MOUNT=$dir/mount
            gv_log "volume $GV_NAME mounted at $GV_MOUNT (FUSE client $GV_MOUNT_PID, bricks $GV_BRICK_PIDS)"
            return 0
        fi
        kill -0 "$GV_MOUNT_PID" 2>/dev/null || { gv_log "the FUSE client ended: $(tail -3 "$dir/mount.log")"; return 1; }
        sleep 0.1
    done
    gv_log "$dir/mount not mounted within 60 s"
    return 1
}

# Stops PID: asked, then killed if it does not end within 10 s; reaped if it is our child.
gv_stop_pid() {
    local i
    kill -CONT "$1" 2>/dev/null || true
    kill -TERM "$1" 2>/dev/null || true
    for i in $(seq 1 100); do
        kill -0 "$1" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

gv_down() {
    local pid
    if [[ -n $GV_MOUNT_PID ]]; then
        gv_stop_pid "$GV_MOUNT_PID"
        [[ -n $GV_MOUNT ]] && gv_mounted "$GV_MOUNT" && umount -l "$GV_MOUNT"
        GV_MOUNT_PID=""
    fi
    if [[ -n $GV_NAME ]]; then
        gv_gluster volume stop "$GV_NAME" force >/dev/null || true
        gv_gluster volume delete "$GV_NAME" >/dev/null || true
        # What glusterd did not stop, checked by its arguments: a pid is the volume's only while
        # the process names it.
        for pid in $GV_DAEMON_PIDS; do
            if tr '\0' '\n' 2>/dev/null <"/proc/$pid/cmdline" |
                grep -q -e "^$GV_NAME\." -e "^shd/$GV_NAME\$"; then
                kill -KILL "$pid" 2>/dev/null || true
            fi
        done
        GV_NAME=""
    fi
    if [[ -n $GV_GLUSTERD_PID ]]; then
        gv_stop_pid "$GV_GLUSTERD_PID"
        GV_GLUSTERD_PID=""
    fi
    return 0
}
