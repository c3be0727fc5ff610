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
# Alone (docker run -p 8080:8080 -p 5000:5000 acr-import) it is the zero-setup default:
# the built-in registry and the SQLite store in /var/lib/acr-import.
ENV ACR_IMPORT_LISTEN=0.0.0.0:8080 \
    ACR_IMPORT_REGISTRY_LISTEN=0.0.0.0:5000 \
    ACR_IMPORT_DATA_DIR=/var/lib/acr-import
EXPOSE 8080 5000
HEALTHCHECK --interval=10s --timeout=3s --retries=5 CMD curl -fsS http://127.0.0.1:8080/health || exit 1
ENTRYPOINT ["acr-import"]
CMD ["serve"]
