# The jitctl approval broker (`jitctl broker serve`) for Azure Container Apps or any container
# platform. Not built in CI (Docker does not run on the project's test machine); README, "Run a
# broker for a team", says how to deploy it. TLS is the platform's (Container Apps ingress).
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md LICENSE ./
COPY jitctl ./jitctl
RUN pip install . && useradd --system --uid 10001 --home-dir /var/lib/jitctl --create-home broker

# The approval rules: the team's policy folder, reviewed like code (jitctl policy validate).
COPY policies /policies

USER broker
EXPOSE 8080
# Settings from the environment: JITCTL_BROKER_DB (a secret), JITCTL_BROKER_ISSUER,
# JITCTL_BROKER_AUDIENCE, JITCTL_BROKER_CLIENT_ID, JITCTL_BROKER_ADMINS,
# JITCTL_BROKER_SESSION_SECRET (a secret, the same on every replica: serve refuses web pages
# on 0.0.0.0 without it), JITCTL_BROKER_PUBLIC_URL, and AZURE_CLIENT_ID for the user-assigned
# managed identity that holds `jitctl role show broker`.
CMD ["jitctl", "broker", "serve", "--policies", "/policies", "--host", "0.0.0.0", "--port", "8080"]
