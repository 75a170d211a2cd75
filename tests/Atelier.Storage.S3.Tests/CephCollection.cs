using Atelier.Testing;

namespace Atelier.Storage.S3.Tests;

/// <summary>The test classes that share the one Ceph cluster of a run.</summary>
[CollectionDefinition(Name)]
public sealed class CephCollection : ICollectionFixture<CephRgw>
{
    public const string Name = "ceph";
}
