# Pulse, built from this repository. `docker compose up` builds it (see docker-compose.yml).
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin pulse

FROM debian:bookworm-slim
# libnvidia-ml comes from the NVIDIA container runtime when a GPU is passed through;
# without one Pulse runs the simulated fleet and says so.
COPY --from=build /src/target/release/pulse /usr/local/bin/pulse
COPY config /etc/pulse/config
COPY pipelines /etc/pulse/pipelines
ENV PULSE_CONFIG=/etc/pulse/config/pulse.toml \
    PULSE_PIPELINE=/etc/pulse/pipelines/default.toml \
    PULSE_LISTEN=0.0.0.0:5000
EXPOSE 5000
ENTRYPOINT ["/usr/local/bin/pulse"]
CMD ["serve"]
