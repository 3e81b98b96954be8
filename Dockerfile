# Images of the production deployment (docker-compose.yml).
#
#   docker build -t drachtio-b2bua .                      the B2BUA (the last stage, the default)
#   docker build --target rtpengine -t b2bua-rtpengine .  RTPEngine from Debian bookworm's package
#
# The B2BUA is built in stages on node:20-bookworm-slim: `build` compiles TypeScript with the full
# dependency tree, then drops the development dependencies; `runtime` gets only dist/ and the
# production node_modules, without compilers, and runs as the unprivileged `node` user.

# ---------------------------------------------------------------------------------------------
# RTPEngine: the same Debian package (rtpengine-daemon, 10.5 on bookworm) that `npm test` and
# `npm start` run natively, so the production daemon and the tested one read the same
# rtpengine.conf the same way. Userspace forwarding only (no kernel module in a container).
# It comes first so that building the B2BUA with BuildKit never touches it; the legacy builder
# builds it too, once, and caches it.
# ---------------------------------------------------------------------------------------------
FROM debian:bookworm-slim AS rtpengine
RUN apt-get update \
  && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends rtpengine-daemon \
  && rm -rf /var/lib/apt/lists/*
# The package creates the `rtpengine` system user; media ports are above 1024, so no capability
# is needed once the kernel table is off (--table=-1).
USER rtpengine
# Foreground with logs on stderr, so Docker collects them; docker-compose.yml adds the config file
# and the deployment's addresses as arguments.
ENTRYPOINT ["rtpengine", "--foreground", "--log-stderr"]
CMD ["--config-file=/etc/rtpengine/rtpengine.conf", "--table=-1"]

# ---------------------------------------------------------------------------------------------
# B2BUA, build stage: better-sqlite3 falls back to compiling its addon with node-gyp when no
# prebuilt binary can be fetched, which needs python3, make and a C++ compiler.
# ---------------------------------------------------------------------------------------------
FROM node:20-bookworm-slim AS build
RUN apt-get update \
  && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 make g++ \
  && rm -rf /var/lib/apt/lists/*
WORKDIR /app
# Dependencies first: this layer is reused until package.json or package-lock.json changes.
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY . .
RUN npm run build \
  && npm prune --omit=dev --no-audit --no-fund

# ---------------------------------------------------------------------------------------------
# B2BUA, runtime stage.
# ---------------------------------------------------------------------------------------------
FROM node:20-bookworm-slim AS runtime
ENV NODE_ENV=production
WORKDIR /app
# Code and dependencies stay owned by root: the service can read them, not change them.
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist/app ./dist/app
COPY --from=build /app/dist/lib ./dist/lib
# The operator web page is served from its sources (plain HTML, CSS and JavaScript).
COPY --from=build /app/lib/operator/web ./lib/operator/web
# The only writable places, both named volumes in docker-compose.yml (a new volume takes the
# owner of the directory it is first mounted on): /app/var for the B2BUA's runtime files and
# call log, /var/lib/kamailio for Kamailio's SQLite file, which the `extensions` service creates
# and edits with this image (dist/app/extensions.js).
RUN mkdir -p /app/var /var/lib/kamailio && chown node:node /app/var /var/lib/kamailio
USER node
# SIGTERM makes the B2BUA refuse new calls and drain the ones in progress for SHUTDOWN_TIMEOUT
# seconds; give it longer than that before SIGKILL (docker-compose.yml: stop_grace_period).
STOPSIGNAL SIGTERM
# Liveness from the operator endpoint's /health (no token needed).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s \
  CMD ["node", "-e", "fetch('http://127.0.0.1:8080/health').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
CMD ["node", "dist/app/b2bua.js"]
