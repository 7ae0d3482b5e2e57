//! The parts of TensorBoard's protocol buffers that descent writes, with TensorBoard's field
//! numbers (`tensorboard/compat/proto/event.proto`, `summary.proto`, `tensor.proto`,
//! `plugins/hparams/api.proto`, `plugin_data.proto`; `google/protobuf/struct.proto`). Fields
//! descent never sets are left out: a reader skips unknown fields, and every field here keeps
//! its number, so the bytes are what TensorBoard's own writer produces for the same content.

use std::collections::BTreeMap;

/// `tensorboard.Event`: one record of an event file.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Event {
    /// Seconds since the Unix epoch.
    #[prost(double, tag = "1")]
    pub wall_time: f64,
    /// The global step.
    #[prost(int64, tag = "2")]
    pub step: i64,
    /// What the event holds.
    #[prost(oneof = "event::What", tags = "3, 5, 7")]
    pub what: Option<event::What>,
}

/// `Event`'s `oneof what`.
pub mod event {
    /// The kinds of event descent writes.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum What {
        /// The first record of every file: `brain.Event:2`.
        #[prost(string, tag = "3")]
        FileVersion(String),
        /// Tagged values.
        #[prost(message, tag = "5")]
        Summary(super::Summary),
        /// A session's start: readers drop the events before it at its step and later.
        #[prost(message, tag = "7")]
        SessionLog(super::SessionLog),
    }
}

/// `tensorboard.SessionLog`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SessionLog {
    /// `SessionStatus`: 1 is `START`.
    #[prost(int32, tag = "1")]
    pub status: i32,
}

/// `tensorboard.Summary`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Summary {
    /// The values, each with its tag.
    #[prost(message, repeated, tag = "1")]
    pub value: Vec<Value>,
}

/// `tensorboard.Summary.Value`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Value {
    /// The series this value belongs to (`train/loss`).
    #[prost(string, tag = "1")]
    pub tag: String,
    /// The plugin that reads it (HParams).
    #[prost(message, optional, tag = "9")]
    pub metadata: Option<SummaryMetadata>,
    /// The value.
    #[prost(oneof = "value::Kind", tags = "2, 5, 8")]
    pub kind: Option<value::Kind>,
}

/// `Value`'s `oneof value`.
pub mod value {
    /// A scalar, a histogram or a tensor.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Kind {
        /// `simple_value`: what the scalars dashboard shows.
        #[prost(float, tag = "2")]
        SimpleValue(f32),
        /// `histo`: what the histograms and distributions dashboards show.
        #[prost(message, tag = "5")]
        Histo(super::HistogramProto),
        /// `tensor`: the HParams plugin's summaries carry an empty one.
        #[prost(message, tag = "8")]
        Tensor(super::TensorProto),
    }
}

/// `tensorboard.SummaryMetadata`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SummaryMetadata {
    /// Which plugin, and its data.
    #[prost(message, optional, tag = "1")]
    pub plugin_data: Option<PluginData>,
}

/// `tensorboard.SummaryMetadata.PluginData`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PluginData {
    /// `hparams`.
    #[prost(string, tag = "1")]
    pub plugin_name: String,
    /// The plugin's own message, serialized (an [`HParamsPluginData`]).
    #[prost(bytes = "vec", tag = "2")]
    pub content: Vec<u8>,
}

/// `tensorboard.HistogramProto`: buckets by their right edges.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HistogramProto {
    /// Smallest value.
    #[prost(double, tag = "1")]
    pub min: f64,
    /// Largest value.
    #[prost(double, tag = "2")]
    pub max: f64,
    /// How many values.
    #[prost(double, tag = "3")]
    pub num: f64,
    /// Their sum.
    #[prost(double, tag = "4")]
    pub sum: f64,
    /// The sum of their squares.
    #[prost(double, tag = "5")]
    pub sum_squares: f64,
    /// Bucket `i` holds the values in `[bucket_limit[i-1], bucket_limit[i])`.
    #[prost(double, repeated, tag = "6")]
    pub bucket_limit: Vec<f64>,
    /// How many values each bucket holds.
    #[prost(double, repeated, tag = "7")]
    pub bucket: Vec<f64>,
}

/// `tensorboard.TensorProto`, as far as an empty float tensor needs it.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorProto {
    /// `DT_FLOAT` is 1.
    #[prost(int32, tag = "1")]
    pub dtype: i32,
    /// The shape.
    #[prost(message, optional, tag = "2")]
    pub tensor_shape: Option<TensorShape>,
}

/// `tensorboard.TensorShapeProto`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorShape {
    /// The dimensions.
    #[prost(message, repeated, tag = "2")]
    pub dim: Vec<Dim>,
}

/// `tensorboard.TensorShapeProto.Dim`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Dim {
    /// The size.
    #[prost(int64, tag = "1")]
    pub size: i64,
}

/// `tensorboard.hparams.HParamsPluginData`: one of the three HParams summaries.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HParamsPluginData {
    /// The plugin data version, 0.
    #[prost(int32, tag = "1")]
    pub version: i32,
    /// Which summary.
    #[prost(oneof = "hparams_plugin_data::Data", tags = "2, 3, 4")]
    pub data: Option<hparams_plugin_data::Data>,
}

/// `HParamsPluginData`'s `oneof data`.
pub mod hparams_plugin_data {
    /// The experiment (at the log directory's root), or a session's start or end (in a run).
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Data {
        /// `_hparams_/experiment`.
        #[prost(message, tag = "2")]
        Experiment(super::Experiment),
        /// `_hparams_/session_start_info`.
        #[prost(message, tag = "3")]
        SessionStartInfo(super::SessionStartInfo),
        /// `_hparams_/session_end_info`.
        #[prost(message, tag = "4")]
        SessionEndInfo(super::SessionEndInfo),
    }
}

/// `tensorboard.hparams.Experiment`: the hyperparameters and metrics the table shows.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Experiment {
    /// What the study is.
    #[prost(string, tag = "1")]
    pub description: String,
    /// When it was created, seconds since the Unix epoch.
    #[prost(double, tag = "3")]
    pub time_created_secs: f64,
    /// The hyperparameters.
    #[prost(message, repeated, tag = "4")]
    pub hparam_infos: Vec<HParamInfo>,
    /// The metrics.
    #[prost(message, repeated, tag = "5")]
    pub metric_infos: Vec<MetricInfo>,
    /// The study's name.
    #[prost(string, tag = "6")]
    pub name: String,
}

/// `tensorboard.hparams.HParamInfo`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HParamInfo {
    /// The hyperparameter's name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// `DataType`: 1 string, 2 bool, 3 float64.
    #[prost(int32, tag = "4")]
    pub r#type: i32,
    /// The values a categorical takes.
    #[prost(message, optional, tag = "5")]
    pub domain_discrete: Option<ListValue>,
    /// The range of a number.
    #[prost(message, optional, tag = "6")]
    pub domain_interval: Option<Interval>,
}

/// `tensorboard.hparams.Interval`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Interval {
    /// Lower end.
    #[prost(double, tag = "1")]
    pub min_value: f64,
    /// Upper end.
    #[prost(double, tag = "2")]
    pub max_value: f64,
}

/// `tensorboard.hparams.MetricInfo`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MetricInfo {
    /// The scalar series the metric is read from.
    #[prost(message, optional, tag = "1")]
    pub name: Option<MetricName>,
}

/// `tensorboard.hparams.MetricName`: a scalar tag, in the session's run (`group` empty).
#[derive(Clone, PartialEq, prost::Message)]
pub struct MetricName {
    /// A sub-run of the session; empty for the session's own run.
    #[prost(string, tag = "1")]
    pub group: String,
    /// The scalar's tag.
    #[prost(string, tag = "2")]
    pub tag: String,
}

/// `tensorboard.hparams.SessionStartInfo`: one trial's hyperparameters.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SessionStartInfo {
    /// Hyperparameter values by name.
    #[prost(btree_map = "string, message", tag = "1")]
    pub hparams: BTreeMap<String, PbValue>,
    /// The session group (one per trial).
    #[prost(string, tag = "4")]
    pub group_name: String,
    /// Seconds since the Unix epoch.
    #[prost(double, tag = "5")]
    pub start_time_secs: f64,
}

/// `tensorboard.hparams.SessionEndInfo`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SessionEndInfo {
    /// `Status`: 1 success, 2 failure.
    #[prost(int32, tag = "1")]
    pub status: i32,
    /// Seconds since the Unix epoch.
    #[prost(double, tag = "2")]
    pub end_time_secs: f64,
}

/// `google.protobuf.ListValue`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ListValue {
    /// The values.
    #[prost(message, repeated, tag = "1")]
    pub values: Vec<PbValue>,
}

/// `google.protobuf.Value`, without its null, struct and list kinds.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PbValue {
    /// The value.
    #[prost(oneof = "pb_value::Kind", tags = "2, 3, 4")]
    pub kind: Option<pb_value::Kind>,
}

/// `Value`'s `oneof kind`.
pub mod pb_value {
    /// A number, a string or a bool.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Kind {
        /// `number_value`.
        #[prost(double, tag = "2")]
        Number(f64),
        /// `string_value`.
        #[prost(string, tag = "3")]
        Text(String),
        /// `bool_value`.
        #[prost(bool, tag = "4")]
        Bool(bool),
    }
}
