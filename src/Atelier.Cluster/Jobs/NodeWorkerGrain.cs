using Atelier.Cluster.Placement;
using Atelier.Storage.Audit;
using Atelier.Storage.Blobs;
using Atelier.Training.Execution;

namespace Atelier.Cluster.Jobs;

/// <summary>A node's worker agent; see <see cref="INodeWorkerGrain"/>.</summary>
[NodePlacement]
public sealed class NodeWorkerGrain(IFineTuningWork work, LocalBlobEndpoint blobs, AuditLog audit, INodeServingLoad serving) : Grain, INodeWorkerGrain
{
    /// <inheritdoc />
    public Task RunAsync(string jobId)
    {
        work.StartTraining(jobId, this.GetPrimaryKeyString());
        return Task.CompletedTask;
    }

    /// <inheritdoc />
    public Task ValidateAsync(string jobId)
    {
        work.StartValidation(jobId);
        return Task.CompletedTask;
    }

    /// <inheritdoc />
    public Task CancelAsync(string jobId)
    {
        work.Cancel(jobId);
        return Task.CompletedTask;
    }

    /// <inheritdoc />
    public Task<NodeBlobAccess> BlobEndpointAsync() =>
        blobs.BaseAddress is { } address
            ? Task.FromResult(new NodeBlobAccess(address.ToString(), blobs.Token))
            : throw new InvalidOperationException($"Node '{this.GetPrimaryKeyString()}' is not serving HTTP yet.");

    /// <inheritdoc />
    public Task<IReadOnlyList<NodeHeldModel>> ServingLoadAsync() => Task.FromResult(serving.Current());

    /// <inheritdoc />
    public Task<NodeAuditCheck> VerifyAuditAsync()
    {
        var result = audit.Verify();
        return Task.FromResult(new NodeAuditCheck(this.GetPrimaryKeyString(), result.Valid, result.Events, result.Reason, result.HeadHash));
    }
}
