# kubetrail container image: `node cli/main.ts <webhook|proxy> --config F` on Node 24 slim.
# The sources are TypeScript run directly by Node 24's type stripping: there is no build step,
# so the build stage only installs the production dependencies.
#
#   docker build -t kubetrail .
#   docker run --rm kubetrail --help
ARG NODE_VERSION=24.21.0

# ---- dependencies: production only, exactly as locked ----------------------------------------
FROM node:${NODE_VERSION}-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: no dependency needs an install script, and none gets to run one.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && npm cache clean --force

# ---- runtime ---------------------------------------------------------------------------------
FROM node:${NODE_VERSION}-slim AS runtime
# No package manager at run time: the image runs kubetrail and nothing else.
RUN rm -rf /usr/local/lib/node_modules/npm /usr/local/lib/node_modules/corepack \
      /usr/local/bin/npm /usr/local/bin/npx /usr/local/bin/corepack \
      /usr/local/bin/yarn /usr/local/bin/yarnpkg /opt/yarn-* \
 && groupadd --system --gid 10001 kubetrail \
 && useradd --system --uid 10001 --gid kubetrail --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin kubetrail
ENV NODE_ENV=production
WORKDIR /app
# Owned by root and not writable by the kubetrail user: the process cannot change its own code.
COPY --from=deps /app/node_modules ./node_modules
# .dockerignore admits only the runtime sources (no tests, docs, manifests or keys).
COPY . .
# Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
# webhook HTTPS, webhook health/metrics, gateway HTTPS, gateway health/metrics.
EXPOSE 8443 8080 9443 8081
# kafkajs 2.2.4 passes a negative timeout to setTimeout (harmless: Node uses
# 1 ms, as Node <= 22 did silently); only that warning type is silenced.
ENTRYPOINT ["node", "--disable-warning=TimeoutNegativeWarning", "cli/main.ts"]
CMD ["--help"]
