//! The README's example: write, read, write back with the context, read-modify-write.
//! Run it against a node: `cargo run -p quorumkv-client --example readme`
//! (`QUORUMKV_NODE=host:port` to use another node than 127.0.0.1:7070).

use quorumkv_client::{Client, Value};

#[tokio::main]
async fn main() -> Result<(), quorumkv_client::Error> {
    let node = std::env::var("QUORUMKV_NODE").unwrap_or_else(|_| "127.0.0.1:7070".into());
    let client = Client::new([node])?; // any node: the client learns the ring from it
    client.put("greetings", "en", "hello").await?;
    let obj = client.get("greetings", "en").await?; // the value(s) and their causal context
    println!("{:?}", obj.value().and_then(Value::as_str)); // Some("hello")
    client.put("greetings", "en", "hello, world").context(&obj.context).await?; // supersedes it
    let ctx = client
        .update("greetings", "en", |v| {
            Value::text(format!("{}!", v.as_ref().and_then(Value::as_str).unwrap_or("")))
        })
        .resolve(|siblings| siblings.into_iter().max_by_key(Value::len).unwrap_or_else(|| Value::text("")))
        .await?; // read, merge siblings if writers raced, modify, write back with the context
    println!("{:?} {ctx}", client.get("greetings", "en").await?.value().and_then(Value::as_str));
    Ok(())
}
