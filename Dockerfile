# plait image, built from this repository the way an operator installs plait: `npm pack` makes
# the one self-contained tarball (README, "Install"), `npm install -g` puts it in /usr/local
# (/usr/local/bin/plait, the path the systemd units use too).
#
#   docker build -t plait .
#   docker run --rm plait keygen
#   docker run -d -p 7000:7000 -e PLAIT_SECRET=... plait     (or docker-compose.yml)
FROM node:20-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json tsconfig.json tsconfig.base.json README.md PROTOCOL.md ./
COPY packages ./packages
COPY deploy ./deploy
# npm ci builds (prepare: tsc -b); npm pack bundles the built packages and their runtime deps.
RUN npm ci --no-audit --no-fund \
 && mkdir /tmp/pack && npm pack --pack-destination /tmp/pack

FROM node:20-bookworm-slim
COPY --from=build /tmp/pack/ /tmp/pack/
# --offline: the tarball carries every dependency; nothing is fetched.
RUN npm install -g --offline --no-audit --no-fund /tmp/pack/plait-*.tgz \
 && rm -rf /tmp/pack /root/.npm \
 && plait --version
USER node
WORKDIR /home/node
EXPOSE 7000
ENTRYPOINT ["plait"]
CMD ["server", "--listen", "0.0.0.0:7000", "--stats", "0.0.0.0:9100"]
