# syntax=docker/dockerfile:1
# The nftegress image: one image for the agent and the controller (the chart picks the command).
# Multi-stage: the final image holds the compiled JavaScript, the production dependencies,
# Node.js 24 and the two host tools the agent runs (nft, and flock for the table's lock, from
# util-linux, which every Debian image has), nothing else.
#
#   docker build -t nftegress:0.1.0 .        (or: podman build / buildah bud; see docs/image.md)
#
# The controller runs as uid 65532 (the chart sets runAsNonRoot). The agent runs as uid 0 with
# only CAP_NET_ADMIN (the chart drops every other capability): nft needs root's uid for the
# capability to be effective; it is not a privileged container.

ARG NODE_IMAGE=docker.io/library/node:24-bookworm-slim

# --- build: compile TypeScript, then keep only production dependencies --------------------
FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error
COPY tsconfig.json ./
COPY src ./src
RUN npx tsc -p tsconfig.json \
 && npm prune --omit=dev --no-audit --no-fund --loglevel=error

# --- runtime --------------------------------------------------------------------------------
FROM ${NODE_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends nftables util-linux \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 65532 nonroot \
 && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin nonroot
WORKDIR /opt/nftegress
ENV NODE_ENV=production
COPY --from=build /src/package.json ./package.json
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist/src ./dist/src
COPY crds ./crds
USER 65532:65532
ENTRYPOINT ["node", "/opt/nftegress/dist/src/cmd/cli.js"]
CMD ["--help"]
