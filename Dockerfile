# acr-import, the production shape's image (docker-compose.yml). Build: docker build -t acr-import .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p acr-import --locked

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home-dir /var/lib/acr-import --create-home acr-import \
 && install -d -o acr-import -g acr-import /var/lib/acr-import/tls
COPY --from=build /src/target/release/acr-import /usr/local/bin/acr-import
USER acr-import
WORKDIR /var/lib/acr-import
# Alone it is the zero-setup default: the built-in registry and the SQLite store in the volume
# /var/lib/acr-import, every listener on all interfaces, HTTPS on both APIs with a local CA
# made at the first start and kept in the volume (/var/lib/acr-import/tls/ca.pem: trust it):
#   docker run -d -p 8080:8080 -p 8443:8443 -p 5000:5000 -p 5443:5443 -v acr-data:/var/lib/acr-import acr-import
# When every listener is up it prints one line on stdout, `acr-import ready: arm=http://…,
# arm-tls=https://…, registry=http://…, registry-tls=https://…`, for wrappers (Testcontainers)
# to wait on; /health/ready answers 200 from then on while the store, the registry and the
# workers answer (503 with the reason otherwise).
ENV ACR_IMPORT_LISTEN=0.0.0.0:8080 \
    ACR_IMPORT_LISTEN_TLS=0.0.0.0:8443 \
    ACR_IMPORT_REGISTRY_LISTEN=0.0.0.0:5000 \
    ACR_IMPORT_REGISTRY_LISTEN_TLS=0.0.0.0:5443 \
    ACR_IMPORT_TLS_SELF_SIGNED=true \
    ACR_IMPORT_TLS_DIR=/var/lib/acr-import/tls \
    ACR_IMPORT_TLS_HOSTS=localhost,127.0.0.1,::1,host.docker.internal \
    ACR_IMPORT_DATA_DIR=/var/lib/acr-import
VOLUME /var/lib/acr-import
EXPOSE 8080 8443 5000 5443
HEALTHCHECK --interval=5s --timeout=3s --start-period=5s --retries=5 CMD curl -fsS http://127.0.0.1:8080/health/ready || exit 1
ENTRYPOINT ["acr-import"]
CMD ["serve"]
