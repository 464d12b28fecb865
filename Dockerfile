FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY ledger ledger
COPY audit audit
COPY incentives incentives
COPY processors processors
COPY projections projections
COPY schemas schemas
COPY stack stack
COPY programs programs
RUN pip install --no-cache-dir .
