# One image for both long-running processes: `crm-sor api` and `crm-sor worker`.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md worker.py settings.py ./
COPY drivers drivers
COPY activities activities
COPY workflows workflows
COPY api api
COPY store store
COPY vault vault
COPY sandboxes sandboxes
COPY cli cli
RUN pip install --no-cache-dir .
USER nobody
CMD ["crm-sor", "api", "--host", "0.0.0.0"]
