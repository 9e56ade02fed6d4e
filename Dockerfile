# syntax=docker/dockerfile:1
# Multi-stage build: a static binary on a distroless, non-root base.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w -X main.version=${VERSION}" -o /out/gateway ./cmd/gateway \
 && CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/bedrock-sim ./cmd/bedrock-sim

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/gateway /gateway
# The simulator ships in the image for demos and load tests; the gateway
# never starts it unless run with -demo.
COPY --from=build /out/bedrock-sim /bedrock-sim
USER nonroot:nonroot
EXPOSE 8080
ENTRYPOINT ["/gateway"]
