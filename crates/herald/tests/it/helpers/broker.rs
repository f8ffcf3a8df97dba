//! Publishing to the test RabbitMQ, as producers do.

/// A RabbitMQ publisher for tests, on `HERALD_TEST_AMQP_URL`.
pub struct Broker {
    pub url: String,
    _connection: lapin::Connection,
    pub channel: lapin::Channel,
}

impl Broker {
    pub async fn connect() -> Self {
        let url = std::env::var("HERALD_TEST_AMQP_URL")
            .expect("HERALD_TEST_AMQP_URL names the test broker");
        let connection = lapin::Connection::connect(&url, lapin::ConnectionProperties::default())
            .await
            .expect("the broker answers");
        let channel = connection.create_channel().await.unwrap();
        channel
            .confirm_select(lapin::options::ConfirmSelectOptions::default())
            .await
            .unwrap();
        Self {
            url,
            _connection: connection,
            channel,
        }
    }

    /// A queue name no other test uses.
    pub fn queue_name(prefix: &str) -> String {
        format!("{prefix}-{}", ulid::Ulid::new().to_string().to_lowercase())
    }

    /// Publishes to `queue` on the default exchange, as seed 000 says, and waits
    /// for the broker's confirmation.
    pub async fn publish(&self, queue: &str, kind: &str, content_type: &str, body: &[u8]) {
        let properties = lapin::BasicProperties::default()
            .with_content_type(content_type.into())
            .with_type(kind.into())
            .with_delivery_mode(2);
        self.channel
            .basic_publish(
                "".into(),
                queue.into(),
                lapin::options::BasicPublishOptions::default(),
                body,
                properties,
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }

    pub async fn declare(&self, queue: &str, arguments: lapin::types::FieldTable) {
        let options = lapin::options::QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        self.channel
            .queue_declare(queue.into(), options, arguments)
            .await
            .unwrap();
    }

    /// Messages waiting in `queue`.
    pub async fn depth(&self, queue: &str) -> u32 {
        let options = lapin::options::QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        self.channel
            .queue_declare(queue.into(), options, Default::default())
            .await
            .unwrap()
            .message_count()
    }
}
