# The kind node base image: a debootstrapped Debian rootfs (scripts/kind-nodebase)
# with kind's own base files. docker import cannot set STOPSIGNAL, hence a build.
FROM scratch
ADD rootfs.tar /
ENV container=docker
STOPSIGNAL SIGRTMIN+3
ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]
