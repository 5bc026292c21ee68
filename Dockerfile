# plait server image (built from this repository).
FROM node:20-bookworm-slim AS build
WORKDIR /opt/plait
COPY package.json package-lock.json tsconfig.json tsconfig.base.json ./
COPY packages ./packages
RUN npm ci && npm prune --omit=dev

FROM node:20-bookworm-slim
WORKDIR /opt/plait
COPY --from=build /opt/plait /opt/plait
USER node
EXPOSE 7000
ENTRYPOINT ["node", "packages/cli/bin/plait.js"]
CMD ["server", "--listen", "0.0.0.0:7000", "--stats", "0.0.0.0:9100"]
