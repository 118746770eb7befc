# Chime's container image: the static binary that `make build` makes, the
# host's CA certificates and an empty data directory, on an empty base. No base
# image and no build stage with a Go toolchain: nothing is pulled, so the image
# builds offline, and it holds nothing an attacker could use (no shell).
#
# Build it with `make image`, which builds bin/chime and stages
# bin/image/{ca-certificates.crt,data/} first. docs/operations.md ("Docker and
# compose") describes how to run it; docker-compose.yml runs three nodes.
FROM scratch

ARG VERSION=dev
LABEL org.opencontainers.image.title="chime" \
      org.opencontainers.image.description="Clustered scheduler for HTTP callbacks and webhooks" \
      org.opencontainers.image.version="${VERSION}"

# Deliveries to https:// targets verify certificates against these.
COPY bin/image/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
# Owned by the agent's user, so that a new named volume mounted here starts
# out writable by it (Docker copies the directory's owner into the volume).
COPY --chown=10001:10001 bin/image/data/ /data/
COPY bin/chime /chime

# Inside a container the agent must listen on every interface; it then refuses
# to start until it is told what to advertise (CHIME_ADVERTISE_*_ADDR), because
# only the operator knows the addresses other nodes and clients can reach.
ENV CHIME_DATA_DIR=/data \
    CHIME_HTTP_ADDR=0.0.0.0:8700 \
    CHIME_RAFT_ADDR=0.0.0.0:8701 \
    CHIME_GOSSIP_ADDR=0.0.0.0:8702

USER 10001:10001
VOLUME ["/data"]
# HTTP API, Raft and internal RPC, gossip (TCP and UDP).
EXPOSE 8700/tcp 8701/tcp 8702/tcp 8702/udp
# Docker marks the container healthy once the node is ready: a known leader,
# caught up, the initial state present (`chime cluster health --ready` asks
# GET /v1/ready on the default address, 127.0.0.1:8700; no shell, no curl).
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/chime", "cluster", "health", "--ready"]
ENTRYPOINT ["/chime"]
CMD ["agent"]
