/**
 * Metrics of queue functions: the batch report a function returns (what its middleware did with each record),
 * which the local RabbitMQ trigger reads for its Prometheus endpoint (serverless-offline-rabbitmq), and the
 * CloudWatch embedded-metric-format middleware for deployed functions (Powertools Metrics).
 */
export * from './cloudwatch.js';
export * from './report.js';
